#include "cli.hpp"

#include <stdexcept>

#include <unistd.h>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "framecast/error.hpp"
#include "framecast/io/endpoint.hpp"
#include "framecast/io/json.hpp"

namespace framecast::app {
namespace {

log_format chosen_format = log_format::text;

// %j: the log message escaped as the inside of a JSON string.
class json_message_flag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        io::append_json_string(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<json_message_flag>();
    }
};

// %L: "error: " / "warning: " before a problem, nothing before news: the plain terminal style.
class level_prefix_flag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& msg, const std::tm&,
                spdlog::memory_buf_t& dest) override {
        std::string_view p = msg.level >= spdlog::level::err    ? "error: "
                             : msg.level == spdlog::level::warn ? "warning: "
                                                                : "";
        dest.append(p.data(), p.data() + p.size());
    }
    std::unique_ptr<custom_flag_formatter> clone() const override {
        return std::make_unique<level_prefix_flag>();
    }
};

}  // namespace

bool plain_terminal_logs() {
    return chosen_format == log_format::text && ::isatty(STDERR_FILENO) != 0;
}

void set_log_format(log_format format) { chosen_format = format; }

std::string endpoint::to_string() const {
    auto hp = io::format_host_port(host, port);
    return ws_path.empty() ? hp : (wss ? "wss://" : "ws://") + hp + ws_path;
}

endpoint parse_endpoint(const std::string& text) {
    if (text.starts_with("ws://") || text.starts_with("wss://")) return parse_ws_url(text);
    try {
        auto hp = io::parse_host_port(text);
        return {std::move(hp.host), hp.port, {}};
    } catch (const std::invalid_argument& e) {
        throw CLI::ValidationError(e.what());
    }
}

std::string flag_hint(std::error_code ec) {
    return ec == make_error_code(errc::message_too_large) ? " (--max-message)" : "";
}

CLI::Validator validator_from(std::function<void(const std::string&)> parse, std::string syntax) {
    return CLI::Validator(
        [parse = std::move(parse)](std::string& s) -> std::string {
            try {
                parse(s);
            } catch (const CLI::ValidationError& e) {
                return e.what();
            }
            return {};
        },
        std::move(syntax));
}

CLI::Validator endpoint_validator() {
    return validator_from([](const std::string& s) { parse_endpoint(s); }, "HOST:PORT");
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
    } else if (plain_terminal_logs()) {
        // A person is reading: one plain line per event, as nc and redis-cli write them.
        auto formatter = std::make_unique<spdlog::pattern_formatter>();
        formatter->add_flag<level_prefix_flag>('L').set_pattern("%^%L%$%v");
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
    // AsSizeValue would turn "-5" into 2^64 - 5: refuse a sign before it runs (a transform
    // added later runs first).
    CLI::Validator non_negative(
        [](std::string& s) -> std::string {
            auto first = s.find_first_not_of(" \t");
            if (first != std::string::npos && s[first] == '-') {
                return "'" + s + "': a size cannot be negative";
            }
            return {};
        },
        "");
    return cmd.add_option(name, value, help)
        ->transform(CLI::AsSizeValue(false))
        ->transform(non_negative)
        ->default_val(value);
}

CLI::Validator number_validator() {
    return CLI::Validator(
        [](std::string& s) -> std::string {
            std::size_t used = 0;
            try {
                (void)std::stod(s, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || s.find_first_not_of(" \t", used) != std::string::npos) {
                return "'" + s + "' is not a number";
            }
            return {};
        },
        "");
}

}  // namespace framecast::app
