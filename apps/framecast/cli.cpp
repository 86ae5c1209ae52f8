#include "cli.hpp"

#include <charconv>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace framecast::app {
namespace {

log_format chosen_format = log_format::text;

// %j: the log message escaped as the inside of a JSON string.
class json_message_flag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        static constexpr char hex[] = "0123456789abcdef";
        for (char ch : msg.payload) {
            auto c = static_cast<unsigned char>(ch);
            if (c == '"' || c == '\\') {
                dest.push_back('\\');
                dest.push_back(ch);
            } else if (c < 0x20) {
                const char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf]};
                dest.append(esc, esc + sizeof esc);
            } else {
                dest.push_back(ch);
            }
        }
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<json_message_flag>();
    }
};

}  // namespace

void set_log_format(log_format format) { chosen_format = format; }

std::string endpoint::to_string() const {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

endpoint parse_endpoint(const std::string& text) {
    endpoint ep;
    std::string port_text;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
            throw CLI::ValidationError("'" + text + "' is not [IPv6]:PORT");
        }
        ep.host = text.substr(1, close - 1);
        port_text = text.substr(close + 2);
    } else if (auto colon = text.rfind(':'); colon != std::string::npos) {
        ep.host = text.substr(0, colon);
        port_text = text.substr(colon + 1);
        if (ep.host.find(':') != std::string::npos) {
            throw CLI::ValidationError("'" + text + "': write an IPv6 address as [ADDR]:PORT");
        }
    } else {
        port_text = text;
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
        value > 65535) {
        throw CLI::ValidationError("'" + text + "': port must be a number from 0 to 65535");
    }
    ep.port = static_cast<std::uint16_t>(value);
    return ep;
}

CLI::Validator endpoint_validator() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            try {
                parse_endpoint(s);
            } catch (const CLI::ValidationError& e) {
                return e.what();
            }
            return {};
        },
        "HOST:PORT");
}

void setup_logging(int verbosity) {
    auto logger = chosen_format == log_format::json ? spdlog::stderr_logger_mt("framecast")
                                                    : spdlog::stderr_color_mt("framecast");
    spdlog::set_default_logger(logger);
    if (chosen_format == log_format::json) {
        auto formatter = std::make_unique<spdlog::pattern_formatter>(
            spdlog::pattern_time_type::utc);
        formatter->add_flag<json_message_flag>('j').set_pattern(
            R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","msg":"%j"})");
        spdlog::set_formatter(std::move(formatter));
    } else {
        spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    }
    spdlog::set_level(verbosity < 0   ? spdlog::level::warn
                      : verbosity > 0 ? spdlog::level::debug
                                      : spdlog::level::info);
}

void add_verbosity_flags(CLI::App& cmd, int& verbosity) {
    auto* q = cmd.add_flag_callback("-q,--quiet", [&verbosity] { verbosity = -1; },
                                    "Log only warnings and errors");
    auto* v = cmd.add_flag_callback("-v,--verbose", [&verbosity] { verbosity = 1; },
                                    "Log debug detail too");
    q->excludes(v);
}

CLI::Option* add_size_option(CLI::App& cmd, const std::string& name, std::uint64_t& value,
                             const std::string& help) {
    return cmd.add_option(name, value, help)
        ->transform(CLI::AsSizeValue(false))
        ->default_val(value);
}

}  // namespace framecast::app
