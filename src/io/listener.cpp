#include "listener.hpp"

#include <array>
#include <optional>

#include "framecast/io/endpoint.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "transport/tcp.hpp"
#include "auth.hpp"
#include "cert_auth.hpp"
#include "transport/tls.hpp"

namespace framecast::io {

using asio::ip::tcp;

listener::listener(asio::io_context& io, const server_options& opts, server_counters& counters,
                   const memory_budget& budget, std::function<std::size_t()> clients,
                   admit_fn admit)
    : io_(io), opts_(opts), counters_(counters), budget_(budget), clients_(std::move(clients)),
      admit_(std::move(admit)) {
    // A certificate or key that does not load is an error before anything listens.
    if (opts_.tls.enabled()) tls_ = make_tls_server_context(opts_.tls);
    if (opts_.auth.enabled()) auth_ = std::make_unique<jwt_verifier>(opts_.auth);
    if (opts_.auth.cert) certs_ = std::make_unique<cert_authority>(opts_.auth);
}

listener::~listener() = default;

std::string listener::reload_tls() {
    if (!opts_.tls.enabled()) return "TLS is not enabled";
    try {
        tls_ = make_tls_server_context(opts_.tls);
    } catch (const std::exception& e) {
        return e.what();
    }
    return {};
}

std::string listener::reload_permissions(std::optional<std::map<std::string, std::string>> table) {
    if (!certs_) return "--auth cert is not on";
    auto opts = opts_.auth;
    opts.cert_permissions = std::move(table);
    try {
        // Admitted clients hold their own grants (shared), so the old table may go.
        certs_ = std::make_unique<cert_authority>(opts);
    } catch (const std::exception& e) {
        return e.what();
    }
    return {};
}

tcp::endpoint listener::listen(const tcp::endpoint& ep) {
    auto a = std::make_unique<tcp::acceptor>(io_);
    a->open(ep.protocol());
    a->set_option(tcp::acceptor::reuse_address(true));
    if (ep.address().is_v6() && ep.address().is_unspecified()) {
        error_code ec;
        a->set_option(asio::ip::v6_only(false), ec);
    }
    a->bind(ep);
    a->listen(asio::socket_base::max_listen_connections);
    auto bound = a->local_endpoint();
    acceptors_.push_back(std::move(a));
    return bound;
}

tcp::endpoint listener::listen_any(std::uint16_t port) {
    try {
        return listen({tcp::v6(), port});
    } catch (const system_error& e) {
        if (e.code() == asio::error::address_in_use) throw;
        spdlog::debug("IPv6 unavailable ({}), listening on IPv4 only", e.code().message());
        return listen({tcp::v4(), port});
    }
}

void listener::start() {
    for (auto& a : acceptors_) {
        asio::co_spawn(io_, accept_loop(*a), [](std::exception_ptr e) {
            if (e) std::rethrow_exception(e);
        });
    }
}

void listener::close() noexcept {
    closed_ = true;
    for (auto& a : acceptors_) {
        error_code ec;
        a->close(ec);
    }
}

asio::awaitable<void> listener::accept_loop(tcp::acceptor& acceptor) {
    asio::steady_timer backoff(acceptor.get_executor());
    for (;;) {
        auto [ec, socket] = co_await acceptor.async_accept(use_nothrow);
        if (!acceptor.is_open() || ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // Typically EMFILE/ENFILE: the connection stays in the backlog. Log at most once a
            // second and wait a little instead of spinning, leaving clients free descriptors.
            ++counters_.accept_errors;
            auto now = std::chrono::steady_clock::now();
            if (now - last_error_log_ > std::chrono::seconds(1)) {
                last_error_log_ = now;
                spdlog::error("accept failed: {}; retrying", ec.message());
            }
            backoff.expires_after(std::chrono::milliseconds(100));
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        on_accepted(std::move(socket));
    }
}

namespace {

// What max_per_address counts as one address: an IPv4 address (also when mapped into IPv6),
// or the /64 prefix of an IPv6 one (what one host or site usually gets).
std::string address_key(const asio::ip::address& a) {
    if (a.is_v6()) {
        auto v6 = a.to_v6();
        if (v6.is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_string();
        auto bytes = v6.to_bytes();
        std::fill(bytes.begin() + 8, bytes.end(), 0);
        return asio::ip::address_v6(bytes).to_string() + "/64";
    }
    return a.to_string();
}

// A refused client has been told why (and our side shut down): what it sent meanwhile (a
// chat name, a command) is read and dropped for a moment before the close, since closing with
// unread input resets the connection and the reset may destroy the notice before it is read.
// At most 64 KiB or 1 s.
asio::awaitable<void> linger_close(std::unique_ptr<transport> t) {
    asio::steady_timer timer(t->get_executor());
    timer.expires_after(std::chrono::seconds(1));
    timer.async_wait([&t](error_code ec) {
        if (!ec) t->close();
    });
    std::array<char, 4096> buf;
    for (std::size_t dropped = 0; dropped < 64 * 1024;) {
        error_code ec;
        dropped += t->try_read(buf, ec);
        if (ec == asio::error::would_block) {
            const error_code wec = co_await t->wait_readable();
            if (wec) break;
        } else if (ec) {
            break;
        }
    }
    timer.cancel();
    t->close();
}

void close_told(asio::io_context& io, std::unique_ptr<transport> t) {
    asio::co_spawn(io, linger_close(std::move(t)), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
}

}  // namespace

std::string listener::refusal(const asio::ip::address& addr, log_throttle*& throttle) {
    const std::size_t connected = clients_() + handshakes_;
    if (opts_.max_clients != 0 && connected >= opts_.max_clients) {
        ++counters_.clients_rejected;
        throttle = &full_log_;
        return std::to_string(connected) + " clients connected, the limit (max clients)";
    }
    if (budget_.over()) {
        ++counters_.clients_rejected;
        ++counters_.memory_refused;
        throttle = &memory_log_;
        return "the server holds " + std::to_string(budget_.used()) + " bytes, at its limit of " +
               std::to_string(budget_.limit()) + " (memory limit)";
    }
    if (opts_.max_per_address != 0) {
        auto it = per_address_->find(address_key(addr));
        if (it != per_address_->end() && it->second >= opts_.max_per_address) {
            ++counters_.clients_rejected;
            ++counters_.per_address_rejected;
            throttle = &per_address_log_;
            return std::to_string(it->second) + " clients connected from " + it->first +
                   ", the limit (max per address)";
        }
    }
    return {};
}

std::shared_ptr<void> listener::take_slot(const std::string& key) {
    auto counts = per_address_;
    ++(*counts)[key];
    return std::shared_ptr<void>(nullptr, [counts, key](void*) {
        if (auto it = counts->find(key); it != counts->end() && --it->second == 0) counts->erase(it);
    });
}

void listener::on_accepted(tcp::socket socket) {
    error_code ec;
    auto peer = socket.remote_endpoint(ec);
    log_throttle* throttle = nullptr;
    const std::string why = refusal(peer.address(), throttle);
    if (!why.empty()) {
        std::string more;
        if (throttle->allow(more)) {
            spdlog::warn("client {} rejected: {}{}",
                         ec ? std::string("(unknown peer)") : format_endpoint(peer), why, more);
        }
        socket.close(ec);
        return;
    }
    std::shared_ptr<void> slot;
    if (opts_.max_per_address != 0 && !ec) slot = take_slot(address_key(peer.address()));
    if (!tls_ && !auth_) {
        auto t = std::make_unique<tcp_transport>(std::move(socket));
        t->hold(std::move(slot));
        admit_(std::move(t), nullptr);
        return;
    }
    std::string name = ec ? std::string("(unknown peer)") : format_endpoint(peer);
    ++handshakes_;
    asio::co_spawn(io_, prepare(std::move(socket), std::move(name), std::move(slot)),
                   [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
}

// A connection becomes a client only once its TLS handshake is done and it has proved who it
// is: until then it sees nothing, and one that does not finish within the deadline (a
// plaintext client waiting for a welcome, a slow handshake holding a slot) is closed with the
// reason in the log.
asio::awaitable<void> listener::prepare(tcp::socket socket, std::string peer,
                                        std::shared_ptr<void> slot) {
    std::unique_ptr<transport> t;
    if (tls_) {
        auto tls = std::make_unique<tls_transport>(std::move(socket), tls_);
        std::string why;
        const error_code ec = co_await tls->handshake(opts_.tls.handshake_timeout, why);
        if (ec) {
            --handshakes_;
            ++counters_.tls_handshake_failures;
            spdlog::warn("client {} closed: {}", peer, why);
            tls->close();
            co_return;
        }
        if (!tls->peer_subject().empty()) {
            spdlog::debug("client {}: TLS certificate {}", peer, tls->peer_subject());
        }
        if (certs_) {
            --handshakes_;
            tls->hold(std::move(slot));
            admit_certificate(std::move(tls), peer);
            co_return;
        }
        t = std::move(tls);
    } else {
        t = std::make_unique<tcp_transport>(std::move(socket));
    }
    t->hold(std::move(slot));  // the per-address slot, from now on with the connection
    co_await authenticate_then_admit(std::move(t), std::move(peer));
}

void listener::admit_certificate(std::unique_ptr<transport> t, const std::string& peer) {
    auto r = certs_->identify(t->peer_certificate());
    if (!r.ok) {
        ++counters_.auth_refused;
        spdlog::warn("client {} refused: {}", peer, r.error);
        // Told in the mode's shape (it sent nothing to be answered), then closed.
        const std::string notice =
            auth_notice_frames(opts_, "auth-refused", "auth refused: " + r.error, r.error);
        const asio::const_buffer b(notice.data(), notice.size());
        error_code ec;
        t->try_write({&b, 1}, ec);
        t->set_close_reason("authentication failed");  // WebSocket: 1008 after the notice
        t->shutdown_send();
        close_told(io_, std::move(t));
        return;
    }
    if (closed_) {
        t->close();
        return;
    }
    admit_(std::move(t), &r.who);
}

void listener::accept(std::unique_ptr<transport> t, const asio::ip::address* from) {
    if (from && opts_.max_per_address != 0) {
        const std::string key = address_key(*from);
        auto it = per_address_->find(key);
        if (it != per_address_->end() && it->second >= opts_.max_per_address) {
            ++counters_.clients_rejected;
            ++counters_.per_address_rejected;
            std::string more;
            if (per_address_log_.allow(more)) {
                spdlog::warn("client {} rejected: {} clients connected from {}, the limit (max "
                             "per address){}",
                             t->peer_name(), it->second, key, more);
            }
            t->set_close_reason("too many connections from this address (max per address)");
            t->close();
            return;
        }
        t->hold(take_slot(key));
    }
    if (certs_) {
        // wss://: the certificate the gateway's TLS handshake verified (none over ws://: refused).
        const std::string peer = t->peer_name();
        admit_certificate(std::move(t), peer);
        return;
    }
    if (!auth_) {
        admit_(std::move(t), nullptr);
        return;
    }
    ++handshakes_;
    std::string peer = t->peer_name();
    asio::co_spawn(io_, authenticate_then_admit(std::move(t), std::move(peer)),
                   [](std::exception_ptr e) {
                       if (e) std::rethrow_exception(e);
                   });
}

// Counted in handshakes_ by the caller; admits `t` once it proved who it is (auth on).
asio::awaitable<void> listener::authenticate_then_admit(std::unique_ptr<transport> t,
                                                        std::string peer) {
    std::optional<auth_result> auth;
    if (auth_) {
        auth = co_await authenticate(*t, *auth_, opts_, opts_.tls.handshake_timeout);
    }
    --handshakes_;
    if (auth && !auth->ok) {
        ++counters_.auth_refused;
        spdlog::warn("client {} refused: {}", peer, escape_controls(auth->error, true));
        t->set_close_reason("authentication failed");
        close_told(io_, std::move(t));
        co_return;
    }
    if (closed_) {
        t->set_close_reason("server stopping");
        t->close();
        co_return;
    }
    admit_(std::move(t), auth ? &auth->who : nullptr);
}

}  // namespace framecast::io
