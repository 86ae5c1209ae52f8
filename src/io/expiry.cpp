#include "expiry.hpp"

#include <boost/asio/co_spawn.hpp>

#include "framecast/io/relay_unit.hpp"
#include "auth.hpp"

namespace framecast::io {

void token_expiry::start() {
    if (running_ || stopped_) return;
    running_ = true;
    asio::co_spawn(timer_.get_executor(), run(), [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
    });
}

asio::awaitable<void> token_expiry::run() {
    for (;;) {
        timer_.expires_after(period);
        auto [ec] = co_await timer_.async_wait(use_nothrow);
        if (ec || stopped_) co_return;
        sweep();
    }
}

void token_expiry::sweep() {
    const auto now = std::chrono::system_clock::now();
    relay_unit notice;
    auto members = clients_.members();  // close() defers removal, but be safe
    for (auto& m : members) {
        if (m->closed() || m->expires() == std::chrono::system_clock::time_point{} ||
            m->expires() > now) {
            continue;
        }
        if (m->told_expiry) {
            m->close(close_reason::token_expired);
            continue;
        }
        if (!notice) {
            // In the mode's shape: chat and channels clients read pairs.
            relay_unit_builder b(opts_.codec);
            const char* what = opts_.auth.cert ? "certificate expired" : "token expired";
            b.append_encoded(auth_notice_frames(opts_, "auth-expired", what, what));
            notice = b.take();
        }
        m->told_expiry = true;
        m->deliver(notice);
        m->stop_receiving();
    }
}

}  // namespace framecast::io
