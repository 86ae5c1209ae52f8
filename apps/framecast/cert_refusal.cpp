#include "cert_refusal.hpp"

#include <cstdlib>

#include <spdlog/spdlog.h>

#include "client_security.hpp"
#include "framecast/codec.hpp"

namespace framecast::app {
namespace {

constexpr std::string_view notice = "framecast: auth refused: ";
constexpr std::string_view channels_code = "auth-refused ";
// A notice is a short sentence: a longer first frame is a message, passed on as it streams.
constexpr std::uint64_t longest_notice = 4096;

}  // namespace

cert_refusal_watch::cert_refusal_watch(io::frame_handler& inner)
    : inner_(inner), watching_(false) {
    const auto& sec = security_options();
    const char* env = std::getenv("FRAMECAST_TOKEN");
    const bool token = !sec.token_file.empty() || (env != nullptr && *env != '\0');
    watching_ = !sec.tls.cert_file.empty() && !token;
}

exit_code report_cert_refusal(const std::string& name, std::string_view reason) {
    spdlog::error("{}: auth refused: {}", name, escape_controls(reason));
    return exit_code::auth_refused;
}

exit_code cert_refusal_watch::report(const std::string& name) const {
    return report_cert_refusal(name, reason_);
}

bool cert_refusal_watch::release() {
    watching_ = false;
    const std::vector<held> frames = std::move(held_);  // handed on once, even if one stops
    held_.clear();
    for (const auto& f : frames) {
        if (!streaming_) {
            if (!inner_.on_frame(f.payload)) return false;
        } else if (!inner_.on_begin(f.length, f.header) ||
                   (!f.payload.empty() && !inner_.on_data(f.payload)) || !inner_.on_end()) {
            return false;
        }
    }
    return true;
}

bool cert_refusal_watch::decide(held f) {
    const std::string_view p = f.payload;
    if (held_.empty()) {
        if (p.starts_with(notice)) {
            reason_ = p.substr(notice.size());
            return false;
        }
        const bool pair = p == "framecast" || p == "$sys.error";  // the second frame tells
        held_.push_back(std::move(f));
        return pair || release();
    }
    const std::string_view first = held_.front().payload;
    if (first == "framecast" && p.starts_with(notice)) {
        reason_ = p.substr(notice.size());
        return false;
    }
    if (first == "$sys.error" && p.starts_with(channels_code)) {
        reason_ = p.substr(channels_code.size());
        return false;
    }
    held_.push_back(std::move(f));
    return release();
}

bool cert_refusal_watch::on_frame(std::string_view payload) {
    if (!watching_) return inner_.on_frame(payload);
    return decide({0, {}, std::string(payload)});
}

bool cert_refusal_watch::on_begin(std::uint64_t length, std::string_view header) {
    streaming_ = true;
    if (!watching_) return inner_.on_begin(length, header);
    if (length > longest_notice) {
        if (!release()) return false;
        return inner_.on_begin(length, header);
    }
    capturing_ = true;
    current_ = {length, std::string(header), {}};
    return true;
}

bool cert_refusal_watch::on_data(std::string_view piece) {
    if (!capturing_) return inner_.on_data(piece);
    current_.payload.append(piece);
    return true;
}

bool cert_refusal_watch::on_end() {
    if (!capturing_) return inner_.on_end();
    capturing_ = false;
    return decide(std::move(current_));
}

}  // namespace framecast::app
