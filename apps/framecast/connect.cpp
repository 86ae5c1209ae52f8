// framecast connect: not built yet (see the issue that introduces it).
#include <spdlog/spdlog.h>

#include "cli.hpp"

namespace framecast::app {

command_runner register_connect(CLI::App& app) {
    app.add_subcommand("connect", "(not implemented yet)");
    return [] {
        spdlog::error("framecast connect is not implemented yet");
        return exit_code::failure;
    };
}

}  // namespace framecast::app
