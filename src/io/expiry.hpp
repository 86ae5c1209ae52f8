// Auth: clients whose token (or certificate, --auth cert) expires while they are connected are
// told ("framecast: token expired", in the mode's shape: auth_notice_frames) and closed at the next
// sweep, within half a second. One timer for the server, started by the first authenticated
// client; the sweep looks at every client's expiry (a comparison each, four times a second).
#pragma once

#include <chrono>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "framecast/io/server.hpp"
#include "hub.hpp"

namespace framecast::io {

class token_expiry {
public:
    static constexpr std::chrono::milliseconds period{250};

    token_expiry(asio::io_context& io, hub& clients, const server_options& opts)
        : timer_(io), clients_(clients), opts_(opts) {}
    // Starts the sweep unless it runs already.
    void start();
    void stop() {
        stopped_ = true;
        timer_.cancel();
    }

private:
    asio::awaitable<void> run();
    void sweep();

    asio::steady_timer timer_;
    hub& clients_;
    const server_options& opts_;
    bool running_ = false;
    bool stopped_ = false;
};

}  // namespace framecast::io
