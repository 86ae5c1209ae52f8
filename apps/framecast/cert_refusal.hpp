// A client that presents a TLS client certificate and no token (a server running `serve --auth
// cert`) sends nothing to be answered: a refusal arrives unasked, as the connection's first
// frame(s). This handler sits in front of a command's own and recognises the documented
// notices there, in every mode's shape: "framecast: auth refused: <reason>"; the chat pair
// ("framecast", that frame); the channels pair ("$sys.error", "auth-refused <reason>"). Then it
// stops the reader and the command exits 11 (auth refused) with the reason, as for a refused
// token. Anything else is handed on unchanged; after the first message it only passes through.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cli.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {

// Logs "<name>: auth refused: <reason>" (the reason's control characters escaped) and
// returns exit code 11: what every client says when the server refused its certificate.
exit_code report_cert_refusal(const std::string& name, std::string_view reason);

class cert_refusal_watch final : public io::frame_handler {
public:
    // `inner`: the command's handler. Watches only when the client presented a certificate
    // (--tls-cert) and sends no token (a token's refusal is read by connect_to()).
    explicit cert_refusal_watch(io::frame_handler& inner);

    // The server's reason, when it refused the certificate (empty otherwise).
    const std::string& refused() const noexcept { return reason_; }
    // The reader ended: a lone first frame held for its pair ("framecast", "$sys.error" and
    // then the end of the stream) is handed on after all.
    void finish() {
        if (reason_.empty()) release();
    }
    // Logs "<name>: auth refused: <reason>" and returns exit code 11 (report_cert_refusal).
    exit_code report(const std::string& name) const;

    void on_read(std::size_t bytes) override { inner_.on_read(bytes); }
    void on_idle() override { inner_.on_idle(); }
    bool on_frame(std::string_view payload) override;
    bool on_begin(std::uint64_t length, std::string_view header) override;
    bool on_data(std::string_view piece) override;
    bool on_end() override;

private:
    struct held {
        std::uint64_t length = 0;
        std::string header;  // streaming mode: as received
        std::string payload;
    };
    // A whole first (or second) frame: refusal, hold for the pair, or hand everything on.
    bool decide(held f);
    bool release();

    io::frame_handler& inner_;
    bool watching_;
    bool streaming_ = false;  // the decoder runs in streaming mode
    bool capturing_ = false;  // streaming: the current frame is being held
    held current_;
    std::vector<held> held_;  // the pair's first frame, until the second tells
    std::string reason_;
};

}  // namespace framecast::app
