// The server facade: owns the rooms (listener, hub, chat room, idle sweep) and the shared
// buffers, and wires them together. Each room is in its own file; see docs/architecture.md.
#include "framecast/io/server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "auth.hpp"
#include "channel_room.hpp"
#include "chat_room.hpp"
#include "expiry.hpp"
#include "hub.hpp"
#include "listener.hpp"
#include "publisher_table.hpp"
#include "resume_room.hpp"
#include "names.hpp"
#include "session.hpp"

namespace framecast::io {

using asio::ip::tcp;

namespace {

// One message encoded for the hub; a null unit (and logged) when its length cannot be
// announced.
relay_unit encode_message(std::string_view payload, const codec_options& codec) {
    relay_unit_builder b(codec);
    if (auto ec = b.append(payload)) {
        spdlog::error("cannot send a {}-byte message: {}", payload.size(), ec.message());
    }
    return b.take();
}

codec_options first_frame_codec(const server_options& o) {
    auto c = o.codec;
    if (o.chat.enabled) c.max_message = std::min<std::uint64_t>(c.max_message, o.chat.max_name);
    return c;
}

const member* as_member(const session* s) noexcept { return s; }
const session* as_session(const member* m) noexcept { return static_cast<const session*>(m); }

}  // namespace

std::size_t relay_unit_bytes(const server_options& o) noexcept {
    // With lengths in code points a header does not give a frame's size in bytes: one
    // message per unit then.
    if (o.codec.unit != length_unit::bytes) return 0;
    return std::min<std::size_t>(64 * 1024, o.client_buffer / 8);
}

struct server::impl {
    impl(server& owner, asio::io_context& io)
        : io(io), budget(std::make_shared<memory_budget>(owner.opts_.memory_limit)),
          clients(io, owner.opts_, owner.counters_, *budget),
          room(owner.opts_.chat.enabled
                   ? std::make_unique<chat_room>(owner.opts_, owner.counters_, clients)
                   : nullptr),
          channels(owner.opts_.channels.enabled
                       ? std::make_unique<channel_room>(owner.opts_, owner.counters_, clients)
                       : nullptr),
          // With channels the channel room keeps per-channel histories itself.
          resume(owner.opts_.resume.enabled && !owner.opts_.channels.enabled
                     ? std::make_unique<resume_room>(owner.opts_, owner.counters_, clients)
                     : nullptr),
          // Not in chat: a chat client's first frame is its username.
          publishers(owner.opts_.publish_acks.enabled && !owner.opts_.chat.enabled
                         ? std::make_unique<publisher_table>(publisher_limits{
                               owner.opts_.publish_acks.max_publishers,
                               owner.opts_.publish_acks.expiry})
                         : nullptr),
          sweep(io, owner.opts_.idle_timeout,
                owner.opts_.min_inbound_rate != 0 ? owner.opts_.min_inbound_window
                                                  : std::chrono::milliseconds(0)),
          listeners(io, owner.opts_, owner.counters_, *budget, [this] { return clients.size(); },
                    [&owner](std::unique_ptr<transport> t, const identity* who) {
                        if (who) {
                            owner.admit(std::move(t), *who);
                        } else {
                            owner.admit(std::move(t));
                        }
                    }),
          drain_timer(io), expiry(io, clients, owner.opts_),
          ctx{.opts = owner.opts_,
              .counters = owner.counters_,
              .clients = clients,
              .chat = room.get(),
              .channels = channels.get(),
              .resume = resume.get(),
              .publishers = publishers.get(),
              .publish_log = owner.publish_log_,
              .sweep = sweep,
              .publish = [&owner](const relay_unit& u,
                                  const member* m) { owner.publish(u, as_session(m)); },
              .publishes_stay_local = [&owner] { return !owner.ingress_; },
              .remove = [this](member& m) { remove(m); },
              .budget = *budget,
              .read_buffer = *read_buffer,
              .write_scratch = *write_scratch,
              .welcome = {},
              .shutting_down = false,
              .first_frame_codec = first_frame_codec(owner.opts_)} {}

    void remove(member& m) {
        clients.remove(m);
        maybe_done();
    }
    void maybe_done() {
        if (ctx.shutting_down && clients.size() == 0 && done) {
            drain_timer.cancel();
            auto fn = std::move(done);
            done = nullptr;
            fn();
        }
    }

    asio::io_context& io;
    // Declared before ctx, which refers to them.
    std::unique_ptr<std::array<char, read_buffer_size>> read_buffer =
        std::make_unique<std::array<char, read_buffer_size>>();
    std::unique_ptr<std::array<char, write_batch>> write_scratch =
        std::make_unique<std::array<char, write_batch>>();
    // Shared: tracked frames keep it alive until the last one is freed.
    std::shared_ptr<memory_budget> budget;
    hub clients;
    std::unique_ptr<chat_room> room;
    std::unique_ptr<channel_room> channels;
    std::unique_ptr<resume_room> resume;
    std::unique_ptr<publisher_table> publishers;
    idle_sweep sweep;
    listener listeners;
    asio::steady_timer drain_timer;
    token_expiry expiry;
    session_context ctx;
    std::function<void()> done;
};

server::server(asio::io_context& io, server_options opts)
    : opts_(std::move(opts)), impl_(std::make_unique<impl>(*this, io)) {
    if (!opts_.welcome.empty()) impl_->ctx.welcome = make_unit(opts_.welcome, opts_.codec);
}

server::~server() = default;

tcp::endpoint server::listen(const tcp::endpoint& ep) { return impl_->listeners.listen(ep); }

tcp::endpoint server::listen_any(std::uint16_t port) { return impl_->listeners.listen_any(port); }

void server::start() {
    impl_->listeners.start();
    impl_->sweep.start();
}

std::string server::reload_tls() { return impl_->listeners.reload_tls(); }

std::string server::reload_permissions(std::optional<std::map<std::string, std::string>> table) {
    return impl_->listeners.reload_permissions(std::move(table));
}

void server::accept(std::unique_ptr<transport> t, const asio::ip::address* from) {
    if (impl_->ctx.shutting_down) return;
    impl_->listeners.accept(std::move(t), from);
}

void server::admit(std::unique_ptr<transport> t) {
    if (impl_->ctx.shutting_down) return;
    ++counters_.clients_accepted;
    ++counters_.clients_current;
    std::string peer = t->peer_name();
    auto s = std::make_shared<session>(impl_->ctx, std::move(t), std::move(peer));
    impl_->clients.add(s);
    spdlog::info("client {} connected ({} clients)", s->peer(), impl_->clients.size());
    s->start();
}

void server::admit(std::unique_ptr<transport> t, const identity& who) {
    if (impl_->ctx.shutting_down) return;
    ++counters_.clients_accepted;
    ++counters_.clients_current;
    std::string peer = t->peer_name();
    auto s = std::make_shared<session>(impl_->ctx, std::move(t), std::move(peer));
    s->set_identity(who.subject, who.expires, who.grants);
    impl_->clients.add(s);
    spdlog::info("client {} connected as {} ({} clients)", s->peer(),
                 escape_controls(who.subject, true), impl_->clients.size());
    impl_->expiry.start();
    s->start();
}

void server::publish(std::string_view payload, const session* origin) {
    if (auto unit = encode_message(payload, opts_.codec)) publish(unit, origin);
}

void server::publish(const relay_unit& unit, const session* origin) {
    if (ingress_) {
        ingress_(unit, origin);
    } else {
        broadcast(unit, origin);
    }
}

void server::broadcast(std::string_view payload, const session* origin) {
    if (auto unit = encode_message(payload, opts_.codec)) broadcast(unit, origin);
}

void server::broadcast(const relay_unit& unit, const session* origin) {
    broadcast(unit, origin, 0);
}

void server::resume_history(const relay_unit& unit, std::uint64_t offset,
                            std::uint64_t channel_offset) {
    if (impl_->resume) impl_->resume->history(impl_->budget->track(unit), offset);
    if (impl_->channels) {
        impl_->channels->history(impl_->budget->track(unit), offset, channel_offset);
    }
}

void server::set_history_fetch(history_fetch_fn fn) {
    if (impl_->resume) impl_->resume->set_fetch(fn);
    // Channels: the log numbers them too, and its past serves clients older than the window.
    if (impl_->channels) impl_->channels->use_shared_log(std::move(fn));
}

void server::resume_epoch(const std::string& epoch, std::uint64_t next, bool history_follows) {
    if (impl_->resume) impl_->resume->set_epoch(epoch, next, history_follows);
    if (impl_->channels) impl_->channels->set_epoch(epoch, next, history_follows);
}

bool server::resume_channel(std::string_view channel, std::uint64_t last) {
    return !impl_->channels || impl_->channels->known(channel, last);
}

void server::broadcast(const relay_unit& unit, const session* origin, std::uint64_t offset,
                       std::uint64_t channel_offset) {
    // Counted once in the memory budget for as long as a queue or the history holds it.
    relay_unit tracked = impl_->budget->track(unit);
    if (origin) tracked.origin = origin->id();
    if (impl_->channels) {
        impl_->channels->broadcast(tracked, as_member(origin), offset, channel_offset);
    } else if (impl_->room) {
        impl_->room->broadcast(tracked, as_member(origin));
    } else {
        // Resume: offsets and history first; resuming clients get it from there.
        if (impl_->resume) impl_->resume->broadcast(tracked, offset);
        impl_->clients.broadcast(tracked, as_member(origin));
    }
}

relay_unit server::relay_unit_of(shared_frame framed) const {
    // A chat relay, or a channel delivery, is one message in two frames.
    const bool pairs = opts_.chat.enabled || opts_.channels.enabled;
    return adopt_frames(std::move(framed), opts_.codec, pairs ? 2 : 1);
}

relay_unit server::checked_unit(shared_frame framed, std::string& problem) const {
    problem.clear();
    if (!framed || framed->empty()) {
        problem = "no frames";
        return {};
    }
    decoder dec(opts_.codec, decode_mode::whole);
    std::span<const char> in(framed->data(), framed->size());
    std::size_t frames = 0;
    std::string_view sender;
    for (;;) {
        const auto ev = dec.next(in);
        if (ev == decode_event::error) {
            problem = "not whole frames: " + dec.error_message();
            return {};
        }
        if (ev == decode_event::need_more) break;
        if (opts_.chat.enabled && frames % 2 == 0) {
            // Views into `framed`: each frame lies whole in it, so no copy is made.
            const std::string_view name = dec.payload();
            if (frames == 0) {
                sender = name;
                auto bad = name.empty() || name.size() > opts_.chat.max_name ||
                                   !count_code_points(name)
                               ? std::string("empty, too long or not UTF-8")
                               : name_problem(name);
                if (!bad.empty()) {
                    problem = "username '" + escape_controls(name, true) + "' " + bad;
                    return {};
                }
            } else if (name != sender) {
                problem = "relays of more than one sender in one entry";
                return {};
            }
        } else if (opts_.channels.enabled && frames % 2 == 0) {
            // A unit is delivered by its first channel: one holding others would reach that
            // channel's subscribers (and skip the others' permissions).
            const std::string_view channel = dec.payload();
            if (frames == 0) {
                sender = channel;
                std::string detail;
                if (check_name(channel, false, opts_.channels.limits, detail) !=
                    channel_error::none) {
                    problem = "channel '" + escape_controls(channel, true) + "': " + detail;
                    return {};
                }
            } else if (channel != sender) {
                problem = "messages of more than one channel in one entry";
                return {};
            }
        }
        ++frames;
    }
    if (!dec.at_frame_boundary()) {
        problem = "ends inside a frame";
        return {};
    }
    const bool pairs = opts_.chat.enabled || opts_.channels.enabled;
    if (pairs && frames % 2 != 0) {
        problem = std::to_string(frames) + (opts_.chat.enabled ? " frames, not name/message pairs"
                                                               : " frames, not channel/payload pairs");
        return {};
    }
    const std::size_t per = pairs ? 2 : 1;
    return {std::move(framed), frames / per};
}

std::uint64_t server::session_id(const session* s) noexcept { return s ? s->id() : 0; }

void server::set_publish_log(publisher_attach_fn attach) { publish_log_ = std::move(attach); }

std::optional<backplane::publisher_unit> server::take_publisher_unit(const session* origin) {
    if (!origin || !publish_log_) return std::nullopt;
    return const_cast<session*>(origin)->take_publisher_unit();
}

void server::publisher_receipt(const backplane::publisher_receipt& r) {
    if (auto* s = const_cast<session*>(find_session(r.origin_client))) s->on_publisher_receipt(r);
}

const session* server::find_session(std::uint64_t id) const noexcept {
    return as_session(impl_->clients.find(id));
}

bool server::congested() const noexcept { return impl_->clients.holds(0); }

void server::when_ready(std::function<void()> fn) { impl_->clients.when_ready(std::move(fn)); }

std::size_t server::client_count() const noexcept { return impl_->clients.size(); }

std::vector<std::size_t> server::client_queue_bytes() const {
    std::vector<std::size_t> out;
    out.reserve(impl_->clients.size());
    for (const auto& m : impl_->clients.members()) out.push_back(m->queued_bytes());
    return out;
}

server::resume_state server::resume_status() const {
    resume_state st;
    if (const auto* c = impl_->channels.get(); c && c->history()) {
        // Offsets are per channel: no one next offset.
        st.epoch = c->epoch();
        st.history_messages = c->history()->messages();
        st.history_bytes = c->history()->bytes();
        st.clients = c->positioned_clients();
        st.max_lag = c->max_lag();
        return st;
    }
    if (!impl_->resume) return st;
    const auto& r = *impl_->resume;
    st.epoch = r.epoch();
    st.next_offset = r.log().next();
    st.oldest_offset = r.log().oldest();
    st.history_messages = r.log().messages();
    st.history_bytes = r.log().bytes();
    st.clients = r.clients();
    st.max_lag = r.max_lag();
    return st;
}

server::publish_state server::publish_status() const {
    publish_state st;
    if (const auto* t = impl_->publishers.get()) {
        st.publishers = t->size();
        st.evicted = t->evicted();
        st.expired = t->expired();
    }
    return st;
}

std::size_t server::memory_used() const noexcept { return impl_->budget->used(); }

std::vector<channel_metric> server::channel_metrics() const {
    return impl_->channels ? impl_->channels->metrics() : std::vector<channel_metric>{};
}

void server::count_external_memory(const std::atomic<std::uint64_t>* bytes) noexcept {
    impl_->budget->set_external(bytes);
}

std::size_t server::queued_bytes_total() const noexcept {
    return impl_->clients.queued_bytes_total();
}

void server::shutdown(std::chrono::milliseconds drain_timeout, std::function<void()> done) {
    auto& im = *impl_;
    if (im.ctx.shutting_down) return;
    im.ctx.shutting_down = true;
    im.done = std::move(done);
    im.listeners.close();
    im.sweep.stop();
    im.expiry.stop();
    // Nothing new is published while the queues drain: let nobody wait for them.
    im.clients.stop_pacing();
    spdlog::info("shutting down: flushing {} clients (at most {} ms)", im.clients.size(),
                 drain_timeout.count());
    for (auto& m : im.clients.members()) m->drain();
    im.drain_timer.expires_after(drain_timeout);
    im.drain_timer.async_wait([this](error_code ec) {
        if (ec) return;
        auto members = impl_->clients.members();  // close() defers removal, but be safe
        for (auto& m : members) m->close(close_reason::drain_timeout);
    });
    asio::post(im.io, [this] { impl_->maybe_done(); });
}

void server::close_all(const std::string& reason) {
    auto members = impl_->clients.members();  // close() defers removal, but be safe
    for (auto& m : members) m->close(close_reason::server_stopping, reason);
}

}  // namespace framecast::io
