#include "framecast/io/endpoint.hpp"

#include <charconv>

namespace framecast::io {

host_port parse_host_port(std::string_view text) {
    const std::string quoted = "'" + std::string(text) + "'";
    host_port hp;
    std::string_view port_text;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw std::invalid_argument(quoted + " is not [IPv6]:PORT");
        }
        hp.host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
        hp.host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (hp.host.find(':') != std::string::npos) {
            throw std::invalid_argument(quoted + ": write an IPv6 address as [ADDR]:PORT");
        }
    } else {
        port_text = text;
    }
    unsigned value = 0;
    const char* end = port_text.data() + port_text.size();
    auto [stop, ec] = std::from_chars(port_text.data(), end, value);
    if (port_text.empty() || ec != std::errc{} || stop != end || value > 65535) {
        throw std::invalid_argument(quoted + ": port must be a number from 0 to 65535");
    }
    hp.port = static_cast<std::uint16_t>(value);
    return hp;
}

std::string format_host_port(std::string_view host, std::uint16_t port) {
    std::string out;
    out.reserve(host.size() + 8);
    const bool v6 = host.find(':') != std::string_view::npos;
    if (v6) out += '[';
    out += host;
    if (v6) out += ']';
    out += ':';
    out += std::to_string(port);
    return out;
}

std::string format_endpoint(const asio::ip::address& address, std::uint16_t port) {
    auto addr = address;
    if (addr.is_v6() && addr.to_v6().is_v4_mapped()) {
        addr = asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6());
    }
    return format_host_port(addr.to_string(), port);
}

}  // namespace framecast::io
