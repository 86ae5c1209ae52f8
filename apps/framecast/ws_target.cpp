// ws:// targets for the clients (connect, chat, send): the URL, and the connection through the
// WebSocket bridge (io/ws_client.hpp) instead of a plain TCP connection.
#include "cli.hpp"

#include "framecast/io/endpoint.hpp"
#include "framecast/io/ws_client.hpp"

#include <algorithm>
#include <stdexcept>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "client_security.hpp"
#include "framecast/error.hpp"
#include "framecast/io/tls_client.hpp"
#include "ws_target.hpp"

namespace framecast::app {

endpoint parse_ws_url(const std::string& text) {
    const bool wss = text.starts_with("wss://");
    std::string_view rest = std::string_view(text).substr(wss ? 6 : 5);  // after "ws(s)://"
    const auto slash = rest.find('/');
    std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    std::string authority(rest.substr(0, slash));
    if (authority.empty()) throw CLI::ValidationError("'" + text + "': the URL names no host");
    // No port: 80 (443 for wss), as for http(s).
    const bool bracketed = authority.front() == '[';
    const auto colon = authority.rfind(':');
    const bool has_port = bracketed ? authority.back() != ']' : colon != std::string::npos;
    if (!has_port) authority += wss ? ":443" : ":80";
    try {
        auto hp = io::parse_host_port(authority);
        if (hp.host.empty()) throw std::invalid_argument("'" + text + "': the URL names no host");
        return {std::move(hp.host), hp.port, std::move(path), wss};
    } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError(e.what());
    }
}

namespace {

asio::awaitable<error_code> connect_transport(io::client_stream& socket, const endpoint& target,
                                              io::duration timeout, std::string& what,
                                              const codec_options& codec) {
    const auto& tls = security_options().tls;
    const bool tls_options = !tls.ca_file.empty() || !tls.cert_file.empty() ||
                             !tls.server_name.empty() || tls.insecure;
    if (tls_options && !tls.enabled && !target.wss) {
        what = "--tls-ca, --tls-cert, --tls-server-name and --tls-insecure need --tls (or a "
               "wss:// URL)";
        co_return error_code(make_error_code(errc::tls_handshake_failed));
    }
    if (!target.ws_path.empty()) {
        if (tls.enabled && !target.wss) {
            what = "--tls with a ws:// URL: for WebSocket over TLS write wss://";
            co_return error_code(make_error_code(errc::tls_handshake_failed));
        }
        // wss://: the --tls-* options apply (CA, client certificate, server name, insecure).
        io::tls_client_options wss = tls;
        wss.enabled = target.wss;
        co_return co_await io::async_connect_ws(socket.socket(), target.host, target.port, target.ws_path,
                                                timeout, what, codec, wss);
    }
    if (tls.enabled) {
        co_return co_await io::async_connect_tls(socket, target.host, target.port, tls, timeout,
                                                 what);
    }
    co_return co_await io::async_connect(socket.socket(), target.host, target.port, timeout, what);
}

// Reads one frame of the server's answer to a token (at most 4 KiB) into `out`.
asio::awaitable<bool> read_answer(io::client_stream& socket, const codec_options& codec,
                                  std::string& out) {
    codec_options answer_codec = codec;
    answer_codec.max_message = std::min<std::uint64_t>(codec.max_message, 4096);
    decoder dec(answer_codec, decode_mode::whole);
    std::string header(codec.header_size, '\0');
    auto [hec, hn] = co_await socket.read_exactly(asio::buffer(header));
    std::span<const char> in(header.data(), hn);
    auto ev = hec ? decode_event::error : dec.next(in);
    std::string payload;
    if (ev == decode_event::need_more) {
        payload.resize(dec.length());
        auto [pec, pn] = co_await socket.read_exactly(asio::buffer(payload));
        std::span<const char> rest(payload.data(), pn);
        ev = pec ? decode_event::error : dec.next(rest);
    }
    const bool got = ev == decode_event::frame;
    if (got) out = std::string(dec.payload());
    co_return got;
}

// Sends the token as one frame and reads the server's answer, exactly one frame (or the pair a
// channels server answers with); what follows is the stream, for the caller.
asio::awaitable<error_code> authenticate(io::client_stream& socket, const std::string& token,
                                         const std::string& name, std::string& what,
                                         const codec_options& codec) {
    const error_code refused(make_error_code(errc::auth_refused));
    std::string out;
    if (auto ec = append_frame(out, token, codec)) {
        what = "the token cannot be framed: " + ec.message();
        co_return refused;
    }
    auto [wec, wn] = co_await socket.write(asio::buffer(out));
    if (wec) {
        what = name + ": sending the token failed: " + wec.message();
        co_return wec;
    }
    std::string answer;
    const bool got = co_await read_answer(socket, codec, answer);
    if (!got) {
        what = name + ": no answer to the token (the server closed or sent no frame)";
        co_return refused;
    }
    constexpr std::string_view ok = "framecast: auth ok";
    constexpr std::string_view no = "framecast: auth refused: ";
    if (answer == ok) co_return error_code{};
    // A channels server answers as to an AUTH command: "$sys.ok" "AUTH", or "$sys.error"
    // "auth-refused <reason>".
    if (answer == "$sys.ok" || answer == "$sys.error") {
        const bool accepted = answer == "$sys.ok";
        const bool second = co_await read_answer(socket, codec, answer);
        constexpr std::string_view code = "auth-refused ";
        if (second && accepted && answer == "AUTH") co_return error_code{};
        if (second && !accepted && answer.substr(0, code.size()) == code) {
            what = name + ": auth refused: " + escape_controls(answer.substr(code.size()));
            co_return refused;
        }
        answer = "$sys... " + answer;
    }
    if (answer.substr(0, no.size()) == no) {
        what = name + ": auth refused: " + escape_controls(answer.substr(no.size()));
    } else {
        what = name + ": the server did not answer the token (is it `serve --auth jwt`?); its "
                      "first message was '" + escape_controls(answer.substr(0, 80)) + "'";
    }
    co_return refused;
}

}  // namespace

asio::awaitable<error_code> connect_to(io::client_stream& socket, const endpoint& target,
                                           io::duration timeout, std::string& what,
                                           const codec_options& codec) {
    std::string token;
    try {
        token = load_token();
    } catch (const std::runtime_error& e) {
        what = e.what();
        co_return error_code(make_error_code(errc::auth_refused));
    }
    error_code ec = co_await connect_transport(socket, target, timeout, what, codec);
    if (ec || token.empty()) co_return ec;
    co_return co_await authenticate(socket, token, target.to_string(), what, codec);
}

exit_code connect_exit_code(error_code ec) noexcept {
    const std::error_code e = ec;
    if (e.category() == codec_category()) return exit_code_for(e);
    return exit_code::connect_failed;
}

}  // namespace framecast::app
