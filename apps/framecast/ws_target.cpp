// ws:// targets for the clients (connect, chat, send): the URL, and the connection through the
// WebSocket bridge (io/ws_client.hpp) instead of a plain TCP connection.
#include "cli.hpp"

#include "framecast/io/endpoint.hpp"
#include "framecast/io/ws_client.hpp"

namespace framecast::app {

endpoint parse_ws_url(const std::string& text) {
    std::string_view rest = std::string_view(text).substr(5);  // after "ws://"
    const auto slash = rest.find('/');
    std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    std::string authority(rest.substr(0, slash));
    if (authority.empty()) throw CLI::ValidationError("'" + text + "': the URL names no host");
    // No port: 80, as for http.
    const bool bracketed = authority.front() == '[';
    const auto colon = authority.rfind(':');
    const bool has_port = bracketed ? authority.back() != ']' : colon != std::string::npos;
    if (!has_port) authority += ":80";
    try {
        auto hp = io::parse_host_port(authority);
        if (hp.host.empty()) throw std::invalid_argument("'" + text + "': the URL names no host");
        return {std::move(hp.host), hp.port, std::move(path)};
    } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError(e.what());
    }
}

asio::awaitable<error_code> connect_to(io::tcp::socket& socket, const endpoint& target,
                                           io::duration timeout, std::string& what,
                                           const codec_options& codec) {
    if (target.ws_path.empty()) {
        co_return co_await io::async_connect(socket, target.host, target.port, timeout, what);
    }
    co_return co_await io::async_connect_ws(socket, target.host, target.port, target.ws_path,
                                            timeout, what, codec);
}

}  // namespace framecast::app
