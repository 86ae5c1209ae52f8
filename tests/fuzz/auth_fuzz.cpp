// The authentication path's parser: whatever a client sends as its first frame reaches
// jwt_verifier::verify (libjwt's base64url and JSON parsing, our claim checks). It must refuse
// garbage with a reason, never crash, and accept nothing that is not signed with the key.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <unistd.h>

#include "auth.hpp"

namespace {

const framecast::io::jwt_verifier& verifier() {
    static const framecast::io::jwt_verifier v = [] {
        char path[] = "/tmp/framecast-fuzz-secretXXXXXX";
        const int fd = mkstemp(path);
        if (fd < 0) std::abort();
        const std::string secret = "fuzzing-secret-that-is-32-bytes-long!";
        if (write(fd, secret.data(), secret.size()) != static_cast<ssize_t>(secret.size())) std::abort();
        close(fd);
        framecast::io::server_options::auth_options o;
        o.jwt_key = path;
        framecast::io::jwt_verifier made(o);
        std::remove(path);
        return made;
    }();
    return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view token(reinterpret_cast<const char*>(data), size);
    const auto r = verifier().verify(token);
    // Nothing the fuzzer makes can carry a valid HS256 signature of our secret.
    if (r.ok) std::abort();
    if (r.error.empty()) std::abort();
    return 0;
}
