// framecast send: not built yet (see the issue that introduces it).
#include <spdlog/spdlog.h>

#include "cli.hpp"

namespace framecast::app {

command_runner register_send(CLI::App& app) {
    app.add_subcommand("send", "(not implemented yet)");
    return [] {
        spdlog::error("framecast send is not implemented yet");
        return exit_code::failure;
    };
}

}  // namespace framecast::app
