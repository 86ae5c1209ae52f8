// framecast bench: runs the peer comparison harness (bench/run.py) with this binary as the
// framecast under test. The harness is a script because its job is orchestration and plotting;
// the measuring is done by the small C++ peers it starts (bench/peers).
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli.hpp"

namespace framecast::app {

namespace {

std::string env_or(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

}  // namespace

command_runner register_bench(CLI::App& app) {
    auto* cmd = app.add_subcommand(
        "bench",
        "Benchmark framecast against the raw-TCP ceiling, ZeroMQ and the tutorial's Python on "
        "loopback: table on stdout, CSV/JSON/PNG in --out. All arguments go to bench/run.py "
        "(`framecast bench --help` lists them; `--quick` runs in under a minute).");
    cmd->prefix_command();   // everything after `bench` belongs to the script
    cmd->allow_extras();
    cmd->fallthrough(false);
    cmd->set_help_flag();    // including --help
    return [cmd] {
        const std::string script = env_or("FRAMECAST_BENCH_SCRIPT", FRAMECAST_BENCH_SCRIPT);
        const std::string bin_dir = env_or("FRAMECAST_BENCH_BIN_DIR", FRAMECAST_BENCH_BIN_DIR);
        if (!std::filesystem::exists(script)) {
            std::fprintf(stderr, "framecast bench: no harness at %s (set FRAMECAST_BENCH_SCRIPT)\n",
                         script.c_str());
            return exit_code::failure;
        }
        std::error_code ec;
        auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
        std::vector<std::string> args{"python3", script, "--bin-dir", bin_dir};
        if (!ec) {
            args.push_back("--framecast");
            args.push_back(self.string());
        }
        for (auto& a : cmd->remaining()) args.push_back(a);
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        ::setenv("FRAMECAST_BENCH_PROG", "framecast bench", 1);  // for the script's usage line
        ::execvp("python3", argv.data());
        std::fprintf(stderr, "framecast bench: cannot run python3: %s\n", std::strerror(errno));
        return exit_code::failure;
    };
}

}  // namespace framecast::app
