// framecast: one executable, one subcommand per job.
#include <csignal>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli.hpp"

using framecast::app::exit_code;

int main(int argc, char** argv) {
    // A closed pipe (`framecast connect ... | head`) is an error return from write(), handled
    // where the write happens, not a signal that kills the process. Asio sends with
    // MSG_NOSIGNAL already; this covers stdout.
    std::signal(SIGPIPE, SIG_IGN);

    CLI::App app{
        "framecast: discrete messages over TCP, each framed by a fixed-length header holding the\n"
        "payload length in ASCII decimal (10 bytes by default, e.g. b'18        ').\n\n"
        "Exit codes: 0 ok, 1 failure, 2 usage, 3 connect failed, 4 malformed header,\n"
        "5 message too large, 6 closed mid-message, 7 timed out, 8 address in use,\n"
        "9 invalid UTF-8, 10 TLS failed (certificate not verified, handshake failed),\n"
        "11 auth refused (--token).",
        "framecast"};  // a fixed name, not argv[0], in usage lines and the man page
    app.set_version_flag("--version", "framecast " FRAMECAST_VERSION " (" FRAMECAST_BUILD_INFO ")");
    app.require_subcommand(1);
    app.fallthrough();  // global options may follow the subcommand: `framecast serve --config F`

    // Every option can also come from a TOML file, the command line winning. A subcommand's
    // options go in its section ([serve], [connect], ...). Unknown keys are errors; this must be
    // set before the subcommands exist, as they copy it.
    app.set_config("--config", "", "Read options from this TOML file (command line wins)")
        ->check(CLI::ExistingFile);
    app.allow_config_extras(CLI::config_extras_mode::error);
    std::string format = "text";
    app.add_option("--log-format", format, "Log lines on stderr as text or as JSON objects")
        ->check(CLI::IsMember({"text", "json"}))
        ->capture_default_str();

    std::vector<std::pair<CLI::App*, framecast::app::command_runner>> commands;
    auto add = [&](auto register_fn) {
        auto before = app.get_subcommands({}).size();
        auto run = register_fn(app);
        commands.emplace_back(app.get_subcommands({}).at(before), std::move(run));
    };
    add(framecast::app::register_serve);
    add(framecast::app::register_connect);
    add(framecast::app::register_send);
    add(framecast::app::register_stats);
    add(framecast::app::register_chat);
    add(framecast::app::register_bench);
    add(framecast::app::register_sub);
    add(framecast::app::register_pub);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ConfigError& e) {
        // CLI11 says "INI was not able to parse serve.bogus"; name the key plainly.
        std::string what = e.what();
        const std::string prefix = "INI was not able to parse ";
        if (what.rfind(prefix, 0) == 0) what = "unknown key '" + what.substr(prefix.size()) + "'";
        std::cerr << "framecast: config file: " << what << '\n';
        return static_cast<int>(exit_code::usage);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(exit_code::usage);
    }
    framecast::app::set_log_format(format == "json" ? framecast::app::log_format::json
                                                    : framecast::app::log_format::text);
    try {
        for (auto& [cmd, run] : commands) {
            if (cmd->parsed()) return static_cast<int>(run());
        }
    } catch (const std::exception& e) {
        std::cerr << "framecast: " << e.what() << '\n';
        return static_cast<int>(exit_code::failure);
    }
    return static_cast<int>(exit_code::usage);
}
