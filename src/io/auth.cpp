#include "auth.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include <boost/asio/steady_timer.hpp>
#include <jwt.h>

namespace framecast::io {

namespace {

struct jwt_deleter {
    void operator()(jwt_t* j) const noexcept { jwt_free(j); }
};
using jwt_ptr = std::unique_ptr<jwt_t, jwt_deleter>;

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read the JWT key '" + path + "'");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

bool pem(std::string_view key) { return key.find("-----BEGIN ") != std::string_view::npos; }

}  // namespace

jwt_verifier::jwt_verifier(const server_options::auth_options& opts) {
    const jwt_alg_t alg = jwt_str_alg(opts.jwt_alg.c_str());
    if (alg != JWT_ALG_HS256 && alg != JWT_ALG_RS256 && alg != JWT_ALG_ES256) {
        throw std::runtime_error("--jwt-alg " + opts.jwt_alg + ": use HS256, RS256 or ES256");
    }
    alg_ = alg;
    key_ = read_file(opts.jwt_key);
    if (alg == JWT_ALG_HS256) {
        if (!key_.empty() && key_.back() == '\n') key_.pop_back();
        if (key_.size() < 32) {
            throw std::runtime_error("the HS256 secret in '" + opts.jwt_key +
                                     "' is shorter than 32 bytes: too easy to guess");
        }
        if (pem(key_)) {
            throw std::runtime_error("'" + opts.jwt_key + "' holds a PEM key: HS256 needs a "
                                     "shared secret (RS256/ES256 take a public key)");
        }
    } else if (!pem(key_)) {
        throw std::runtime_error("'" + opts.jwt_key + "' is not a PEM public key (" +
                                 opts.jwt_alg + ")");
    }
}

jwt_verifier::~jwt_verifier() = default;

auth_result jwt_verifier::verify(std::string_view token, std::chrono::system_clock::time_point now) const {
    auth_result r;
    const std::string t(token);
    // 1. The header alone, unverified: its algorithm must be ours ("none", HS/RS confusion).
    jwt_t* raw = nullptr;
    if (jwt_decode(&raw, t.c_str(), nullptr, 0) != 0 || !raw) {
        r.error = "not a JWT";
        return r;
    }
    jwt_ptr unverified(raw);
    // (Decoded without a key, libjwt reports the algorithm as none: read the header itself.)
    const char* alg = jwt_get_header(unverified.get(), "alg");
    const std::string alg_name = alg ? alg : "(none given)";
    if (!alg || jwt_str_alg(alg) != static_cast<jwt_alg_t>(alg_)) {
        r.error = "token algorithm " + alg_name + " is not the server's " +
                  jwt_alg_str(static_cast<jwt_alg_t>(alg_));
        return r;
    }
    // 2. The signature, with our key.
    raw = nullptr;
    if (jwt_decode(&raw, t.c_str(), reinterpret_cast<const unsigned char*>(key_.data()),
                   static_cast<int>(key_.size())) != 0 ||
        !raw) {
        r.error = "bad signature";
        return r;
    }
    jwt_ptr verified(raw);
    if (jwt_get_alg(verified.get()) != static_cast<jwt_alg_t>(alg_)) {
        r.error = "token algorithm " + alg_name + " is not the server's";
        return r;
    }
    const long secs = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    const char* sub = jwt_get_grant(verified.get(), "sub");
    errno = 0;
    const long exp = jwt_get_grant_int(verified.get(), "exp");
    const bool has_exp = errno == 0;
    errno = 0;
    const long nbf = jwt_get_grant_int(verified.get(), "nbf");
    const bool has_nbf = errno == 0;
    if (!sub || !*sub) {
        r.error = "token has no subject (sub)";
    } else if (!has_exp) {
        r.error = "token has no expiry (exp)";
    } else if (exp <= secs) {
        r.error = "token expired";
    } else if (has_nbf && nbf > secs) {
        r.error = "token not valid yet (nbf)";
    } else {
        r.ok = true;
        r.who.subject = sub;
        r.who.expires = std::chrono::system_clock::time_point(std::chrono::seconds(exp));
        if (char* grants = jwt_get_grants_json(verified.get(), "framecast")) {
            const std::string json = grants;
            free(grants);
            try {
                r.who.grants = parse_permissions(json);
            } catch (const std::invalid_argument& e) {
                r.ok = false;
                r.error = std::string("bad permissions: ") + e.what();
            }
        }
    }
    return r;
}

std::string refusal_notice(std::string_view reason) {
    return "framecast: auth refused: " + std::string(reason);
}

std::string auth_notice_frames(const server_options& o, std::string_view code,
                               std::string_view text, std::string_view detail) {
    if (o.channels.enabled) {
        return encode_frame("$sys.error", o.codec) +
               encode_frame(std::string(code) + " " + std::string(detail), o.codec);
    }
    const std::string notice = encode_frame("framecast: " + std::string(text), o.codec);
    return o.chat.enabled ? encode_frame("framecast", o.codec) + notice : notice;
}

asio::awaitable<auth_result> authenticate(transport& t, const jwt_verifier& v,
                                          const server_options& o,
                                          std::chrono::steady_clock::duration deadline) {
    const codec_options& codec = o.codec;
    codec_options token_codec = codec;
    token_codec.max_message = std::min<std::uint64_t>(codec.max_message, max_token_bytes);
    decoder dec(token_codec, decode_mode::whole);
    asio::steady_timer timer(t.get_executor());
    bool timed_out = false;
    timer.expires_after(deadline);
    timer.async_wait([&t, &timed_out](error_code ec) {
        if (ec) return;
        timed_out = true;
        t.close();
    });
    auth_result r;
    std::array<char, 512> buf;
    std::size_t consumed = 0;  // bytes of the frame read so far
    for (;;) {
        // Never read past the token's frame: the session reads what follows.
        const std::size_t frame_end =
            consumed < codec.header_size ? codec.header_size : codec.header_size + dec.length();
        const std::size_t want = std::min(buf.size(), frame_end - consumed);
        error_code ec;
        const std::size_t n = want == 0 ? 0 : t.try_read({buf.data(), want}, ec);
        if (ec == asio::error::would_block) {
            auto wec = co_await t.wait_readable();
            if (timed_out) {
                r.error = "no token within the deadline";
                break;
            }
            if (wec) {
                r.error = wec.message();
                break;
            }
            continue;
        }
        if (ec) {
            r.error = ec == asio::error::eof ? "closed before sending a token" : ec.message();
            break;
        }
        consumed += n;
        std::span<const char> in(buf.data(), n);
        auto ev = dec.next(in);
        if (ev == decode_event::error) {
            r.error = "the first frame is not a token: " + dec.error_message();
            break;
        }
        if (ev == decode_event::frame) {
            r = v.verify(dec.payload());
            break;
        }
    }
    timer.cancel();
    if (r.ok) {
        // One frame saying so, before anything of the stream: the client knows where the
        // answer ends (clients read exactly this frame, then hand the connection on).
        // Channels mode: answered as an AUTH command is, a pair like everything there.
        const std::string ack = o.channels.enabled
                                    ? encode_frame("$sys.ok", codec) + encode_frame("AUTH", codec)
                                    : encode_frame(accepted_notice, codec);
        const asio::const_buffer b(ack.data(), ack.size());
        error_code ec;
        t.try_write({&b, 1}, ec);
    } else if (!timed_out) {
        // One frame telling why; the caller closes the connection.
        const std::string notice =
            o.channels.enabled ? auth_notice_frames(o, "auth-refused", {}, r.error)
                               : encode_frame(refusal_notice(r.error), codec);
        const asio::const_buffer b(notice.data(), notice.size());
        error_code ec;
        t.try_write({&b, 1}, ec);
        t.set_close_reason("authentication failed");  // WebSocket: 1008 after the notice
        t.shutdown_send();
    }
    co_return r;
}

}  // namespace framecast::io
