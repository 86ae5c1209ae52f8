// framecast: one executable, one subcommand per job.
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "config_file.hpp"
#include "malloc_policy.hpp"

using framecast::app::exit_code;

namespace {

// "  serve     Stream framed messages ..." for every subcommand: what `framecast`, an unknown
// command and `framecast help` show.
std::string command_list(const CLI::App& app) {
    std::string out = "Commands:\n";
    for (const auto* sub : app.get_subcommands({})) {
        // The description's first clause, to fit one line.
        auto text = sub->get_description();
        for (const char* stop : {". ", ": ", "; ", "\n"}) {
            if (auto at = text.find(stop); at != std::string::npos) text.resize(at);
        }
        out += "  " + sub->get_name() + std::string(10 - std::min<std::size_t>(9, sub->get_name().size()), ' ') + text + "\n";
    }
    out += "\nRun 'framecast help COMMAND' (or 'framecast COMMAND --help') for a command's options.\n";
    return out;
}

// The first word on the command line that is not an option or an option's value: the command
// the user meant (global options taking a value: --config, --log-format).
std::string first_word(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--config" || a == "--log-format") {
            ++i;
            continue;
        }
        if (!a.empty() && a[0] != '-') return a;
    }
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    framecast::app::keep_freed_memory_for_reuse();
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
        "11 auth refused (--token, or --tls-cert under serve --auth cert),\n"
        "12 messages lost (connect --resume --no-gap).",
        "framecast"};  // a fixed name, not argv[0], in usage lines and the man page
    app.set_version_flag("--version", "framecast " FRAMECAST_VERSION " (" FRAMECAST_BUILD_INFO ")");
    app.require_subcommand(0, 1);  // none: main prints the list of commands
    app.fallthrough();  // global options may follow the subcommand: `framecast serve --config F`

    // Every option can also come from a TOML file, the command line winning. A subcommand's
    // options go in its section ([serve], [connect], ...). Unknown keys are errors; this must be
    // set before the subcommands exist, as they copy it.
    auto* config = app.set_config("--config", "",
                                  "Read options from this TOML file: a table per command "
                                  "([serve], [connect], ...), keys named like the long options "
                                  "(command line wins)")
                       ->check(CLI::ExistingFile);
    auto toml = std::make_shared<framecast::app::toml_config>(app, *config);
    app.config_formatter(toml);
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
    std::string help_topic;
    auto* help = app.add_subcommand("help", "Show the commands, or one command's options");
    help->add_option("command", help_topic, "The command to explain");

    const std::string word = first_word(argc, argv);
    const auto subs = app.get_subcommands({});
    const bool known = word.empty() || std::any_of(subs.begin(), subs.end(), [&](const CLI::App* c) {
                           return c->get_name() == word;
                       });
    if (!known) {
        std::cerr << "framecast: unknown command '" << word << "'\n\n" << command_list(app);
        return static_cast<int>(exit_code::usage);
    }

    try {
        app.parse(argc, argv);
    } catch (const CLI::ConfigError& e) {
        std::cerr << "framecast: config file: " << e.what() << '\n';
        return static_cast<int>(exit_code::usage);
    } catch (const CLI::ParseError& e) {
        // A bad value from the config file: say which line it came from.
        if (auto where = toml->where(e.what()); !where.empty() && e.get_exit_code() != 0) {
            std::cerr << "framecast: " << where << ": " << e.what() << '\n';
            return static_cast<int>(exit_code::usage);
        }
        int rc = app.exit(e);
        return rc == 0 ? 0 : static_cast<int>(exit_code::usage);
    }
    if (help->parsed() || app.get_subcommands().empty()) {
        if (help_topic.empty()) {
            (help->parsed() ? std::cout : std::cerr) << app.get_description() << "\n\n"
                                                      << command_list(app);
            return static_cast<int>(help->parsed() ? exit_code::ok : exit_code::usage);
        }
        for (const auto* sub : app.get_subcommands({})) {
            if (sub->get_name() == help_topic && sub != help) {
                std::cout << sub->help("framecast");
                return 0;
            }
        }
        std::cerr << "framecast: unknown command '" << help_topic << "'\n\n" << command_list(app);
        return static_cast<int>(exit_code::usage);
    }
    // The docs' examples are checked against the real parser (tests/integration/
    // test_docs_examples.py): parse, then stop before running anything.
    if (std::getenv("FRAMECAST_CHECK_ARGS") != nullptr) return 0;
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
