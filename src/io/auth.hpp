// Authentication: a client proves who it is with a JWT sent as its first frame
// (`serve --auth jwt --jwt-key FILE [--jwt-alg HS256|RS256|ES256]`).
//
// The verifier pins the algorithm to the one configured: the token's own "alg" header is read
// first and must match, so "none" and the HS/RS confusion (an RS256 public key used as an HMAC
// secret) are refused before any signature is checked. libjwt (Debian libjwt-dev) checks the
// signature. "sub" (the identity) and "exp" are required; "nbf" is honoured.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>

#include "framecast/codec.hpp"
#include "framecast/io/server.hpp"
#include "framecast/io/transport.hpp"
#include "permissions.hpp"

namespace framecast::io {

// The longest token accepted (a first frame announcing more is refused before it is buffered).
inline constexpr std::size_t max_token_bytes = 8 * 1024;

// Who a client is, once authenticated.
struct identity {
    std::string subject;                         // the token's "sub"
    std::chrono::system_clock::time_point expires{};  // the token's "exp"
    // The token's "framecast" claim: what it may publish and subscribe to (null: anything).
    std::shared_ptr<const permissions> grants;
};

struct auth_result {
    bool ok = false;
    identity who;
    std::string error;  // why not, for the client's notice and the log
};

class jwt_verifier {
public:
    // Reads the key file (HS256: the shared secret, one trailing newline ignored; RS256/ES256:
    // a PEM public key). Throws std::runtime_error naming the file or the algorithm.
    explicit jwt_verifier(const server_options::auth_options& opts);
    ~jwt_verifier();

    auth_result verify(std::string_view token,
                       std::chrono::system_clock::time_point now = std::chrono::system_clock::now()) const;

private:
    std::string key_;
    int alg_;  // jwt_alg_t
};

// Reads exactly one frame from `t` (never a byte more: what follows belongs to the session),
// within `deadline` and at most `max_len` bytes of payload, and verifies it as a token. On
// failure tells the client why in one frame ("framecast: auth refused: <reason>"; channels
// mode: the pair "$sys.error", "auth-refused <reason>") before the caller closes it. Accepted:
// the frame "framecast: auth ok" (channels mode: the pair "$sys.ok", "AUTH").
asio::awaitable<auth_result> authenticate(transport& t, const jwt_verifier& v,
                                          const server_options& o,
                                          std::chrono::steady_clock::duration deadline);

// The frame an authenticated client receives first, and the text of a refusal notice.
inline constexpr std::string_view accepted_notice = "framecast: auth ok";
std::string refusal_notice(std::string_view reason);

// An auth notice (a refusal, an expiry) framed the way the mode's clients read: one frame
// "framecast: <text>"; in chat mode the pair ("framecast", that frame); in channels mode the
// pair ("$sys.error", "<code> <detail>"), like every other error there.
std::string auth_notice_frames(const server_options& o, std::string_view code,
                               std::string_view text, std::string_view detail);

}  // namespace framecast::io
