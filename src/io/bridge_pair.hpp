// The local socket pair behind a client bridge (WebSocket, TLS): the client code gets one end as
// its tcp::socket (it only reads and writes bytes), the bridge the other end.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>

#include "framecast/io/asio.hpp"
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>

namespace framecast::io {

// Makes the pair: `client` (the client's end) and `bridge` (opened on `client`'s executor). On
// failure returns the error and sets `what` to "cannot make the <kind> bridge: <reason>".
inline error_code make_bridge_pair(asio::ip::tcp::socket& client,
                                   asio::local::stream_protocol::socket& bridge,
                                   const std::string& kind, std::string& what) {
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        error_code ec(errno, boost::system::system_category());
        what = "cannot make the " + kind + " bridge: " + ec.message();
        return ec;
    }
    error_code ec;
    client.assign(asio::ip::tcp::v4(), fds[0], ec);
    if (!ec) bridge.assign(asio::local::stream_protocol(), fds[1], ec);
    if (ec) {
        ::close(fds[0]);
        ::close(fds[1]);
        what = "cannot make the " + kind + " bridge: " + ec.message();
    }
    return ec;
}

class tls_transport;

// Moves bytes between a TLS connection whose handshake is done and `local` (the other end of a
// pair from make_bridge_pair), both ways, until either side ends (tls_client.cpp): the TLS
// client's bridge, and the WebSocket gateway's wss:// (the gateway serves the pair's end).
void start_tls_bridge(std::unique_ptr<tls_transport> t, asio::local::stream_protocol::socket local);

}  // namespace framecast::io
