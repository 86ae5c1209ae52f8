// Host and port as text: one parser for what users type ("HOST:PORT", "[v6]:PORT", ":PORT",
// "PORT") and one formatter for what logs and messages show ("127.0.0.1:8080", "[::1]:8080").
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "framecast/io/asio.hpp"
#include <boost/asio/ip/tcp.hpp>

namespace framecast::io {

struct host_port {
    std::string host;  // a name or an address, without brackets; empty: all interfaces
    std::uint16_t port = 0;
};

// Parses "HOST:PORT", "[IPv6]:PORT", ":PORT" or "PORT" (empty host). Throws
// std::invalid_argument with a sentence naming what is wrong (an unbracketed IPv6 address, a
// port that is not 0 to 65535).
host_port parse_host_port(std::string_view text);

// "host:port", with an IPv6 address (any host holding ':') in brackets: "[::1]:8080".
std::string format_host_port(std::string_view host, std::uint16_t port);
inline std::string format_host_port(const host_port& hp) {
    return format_host_port(hp.host, hp.port);
}

// The address as a peer or a listener shows it: an IPv4-mapped IPv6 address ("::ffff:1.2.3.4",
// what a dual-stack socket reports for an IPv4 peer) as IPv4, IPv6 in brackets.
std::string format_endpoint(const asio::ip::address& address, std::uint16_t port);
inline std::string format_endpoint(const asio::ip::tcp::endpoint& ep) {
    return format_endpoint(ep.address(), ep.port());
}

}  // namespace framecast::io
