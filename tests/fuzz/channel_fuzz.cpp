// libFuzzer target: the channel protocol's command parser and subscription trie, and a real
// channels-mode server session fed the same bytes.
//
// Part 1 (model check): the input is lines; a line's first byte picks one of 8 subscribers, the
// rest is a command frame. Each command goes through parse_command and check_name; accepted
// SUB/UNSUB change both the trie and a plain list (the model); a PUB to a valid channel
// compares trie.match() with the model filtered by pattern_matches(). Also: no name check_name
// accepts has an empty token, and an accepted channel has no wildcard.
// Part 2 (session): the input as raw bytes from one client of an in-process `--channels
// --resume` server (memory transport, small windows, epoch "e" so that RESUME commands can
// name it) with a second client subscribed to `>` after "RESUME *" (positions with sequences);
// the server must close or keep the first without crashing, and the second must stay
// connected.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "channel_protocol.hpp"
#include "framecast/io/server.hpp"
#include "subscription_trie.hpp"
#include "transport/memory.hpp"

using namespace framecast;
using namespace framecast::io;

namespace {

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "channel fuzz: %s\n", what);
    std::abort();
}

void model_check(std::string_view input) {
    channel_limits limits;
    limits.max_name = 64;
    limits.max_tokens = 6;
    subscription_trie trie(4);  // a tiny cache: overflows and invalidation get exercised
    std::vector<std::pair<std::string, subscription_trie::subscriber>> model;
    while (!input.empty()) {
        const auto nl = input.find('\n');
        auto line = input.substr(0, nl);
        input = nl == std::string_view::npos ? std::string_view{} : input.substr(nl + 1);
        if (line.empty()) continue;
        const auto who = reinterpret_cast<subscription_trie::subscriber>(
            static_cast<std::uintptr_t>(16 * (1 + (static_cast<unsigned char>(line[0]) & 7))));
        const auto c = parse_command(line.substr(1));
        if (c.error != channel_error::none) {
            if (c.detail.empty()) fail("an error without a detail");
            continue;
        }
        std::string detail;
        const bool pattern = c.what != verb::pub;
        if (c.what == verb::ping || c.what == verb::resume) continue;  // no name to check
        if (check_name(c.arg, pattern, limits, detail) != channel_error::none) continue;
        if (c.arg.empty() || c.arg.front() == '.' || c.arg.back() == '.' ||
            c.arg.find("..") != std::string_view::npos) {
            fail("an empty token was accepted");
        }
        if (!pattern && has_wildcards(c.arg)) fail("a channel with a wildcard was accepted");
        const std::pair<std::string, subscription_trie::subscriber> entry{std::string(c.arg), who};
        auto it = std::find(model.begin(), model.end(), entry);
        if (c.what == verb::sub) {
            const auto r = trie.add(c.arg, who, 1'000'000);
            if ((r == subscription_trie::add_result::duplicate) != (it != model.end())) {
                fail("add disagrees with the model");
            }
            if (it == model.end()) model.push_back(entry);
        } else if (c.what == verb::unsub) {
            if (trie.remove(c.arg, who) != (it != model.end())) fail("remove disagrees");
            if (it != model.end()) model.erase(it);
        } else {
            std::vector<subscription_trie::subscriber> want;
            for (const auto& [p, s] : model) {
                if (pattern_matches(p, c.arg)) want.push_back(s);
            }
            std::sort(want.begin(), want.end());
            want.erase(std::unique(want.begin(), want.end()), want.end());
            if (*trie.match(c.arg) != want) fail("match disagrees with the model");
        }
    }
    if (trie.subscriptions() != model.size()) fail("subscription count drifted");
}

void session_check(std::string_view input) {
    static asio::io_context io;
    static std::unique_ptr<server> srv;
    static std::shared_ptr<memory_transport::pipe> watcher;
    if (!srv) {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>(
            "quiet", std::make_shared<spdlog::sinks::null_sink_st>()));
        server_options o;
        o.welcome.clear();
        o.idle_timeout = std::chrono::milliseconds(0);
        o.codec.max_message = 4096;
        o.channels.enabled = true;
        o.channels.limits.max_subscriptions = 64;
        o.channels.limits.max_channels = 4096;
        o.resume.enabled = true;
        o.resume.epoch = "e";
        o.resume.history_messages = 16;
        o.resume.channel_total_messages = 256;
        o.resume.history_bytes = 64 * 1024;
        o.resume.idle_channels = 64;
        srv = std::make_unique<server>(io, o);
        srv->start();
        watcher = std::make_shared<memory_transport::pipe>(io.get_executor());
        srv->admit(std::make_unique<memory_transport>(watcher, "mem:watcher"));
        watcher->feed(encode_frame("RESUME") + encode_frame("RESUME *") + encode_frame("SUB >"));
    }
    auto p = std::make_shared<memory_transport::pipe>(io.get_executor());
    srv->admit(std::make_unique<memory_transport>(p, "mem:fuzz"));
    p->feed(input);
    p->feed_eof();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!p->closed) {
        if (std::chrono::steady_clock::now() > deadline) fail("the fuzzed client was never closed");
        if (io.stopped()) io.restart();
        io.run_one_for(std::chrono::milliseconds(5));
    }
    if (watcher->closed) fail("the watching client was closed");
    watcher->written.clear();  // bounded memory across runs
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    model_check(input);
    session_check(input);
    return 0;
}
