// framecast serve: not built yet (see the issue that introduces it).
#include <spdlog/spdlog.h>

#include "cli.hpp"

namespace framecast::app {

command_runner register_serve(CLI::App& app) {
    app.add_subcommand("serve", "(not implemented yet)");
    return [] {
        spdlog::error("framecast serve is not implemented yet");
        return exit_code::failure;
    };
}

}  // namespace framecast::app
