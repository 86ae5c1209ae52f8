// Resume with a shared log, in a real server over the in-memory transport, the events driven by
// hand in the order a backplane can deliver them (src/io/node.cpp posts each to the io thread).
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "decode_helpers.hpp"
#include "framecast/io/relay_unit.hpp"
#include "framecast/io/server.hpp"
#include "memory_harness.hpp"
#include "transport/memory.hpp"

using namespace framecast;
using namespace framecast::io;
using namespace std::chrono_literals;

namespace {

std::vector<std::string> frames_of(const std::string& bytes) {
    return test::decode_whole(bytes).frames;
}

struct resume_test : ::testing::Test, framecast::io::test_support::memory_harness {
    std::vector<std::uint64_t> fetches;  // the offsets the log was asked for

    resume_test() {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>(
            "quiet", std::make_shared<spdlog::sinks::null_sink_st>()));
        server_options o;
        o.welcome.clear();
        o.idle_timeout = 0ms;
        o.resume.enabled = true;
        srv = std::make_unique<server>(io, std::move(o));
        // A shared log that holds nothing older than what the node is given (an empty piece).
        srv->set_history_fetch([this](const std::string&, std::uint64_t from,
                                      std::function<void(server::history_piece)> done) {
            fetches.push_back(from);
            asio::post(io, [done = std::move(done)] { done({}); });
        });
        srv->start();
    }
    void settle() {  // everything ready runs (writes completing, pumps)
        io.restart();
        io.poll();
    }
    void history(std::uint64_t offset, std::string_view payload) {
        srv->resume_history(make_unit(payload), offset);
    }
};

}  // namespace

// A node that started while Redis was down holds the request until it learns the log's epoch,
// and then until the log's recent entries (sent after the epoch notice) are all there: answered
// in between, it would wait for entries that reach only the history, or be told of a gap.
TEST_F(resume_test, a_held_request_is_answered_once_the_logs_recent_entries_are_in) {
    auto c = connect("mem:c");
    c->feed(encode_frame("@resume w E1 1"));
    settle();
    EXPECT_TRUE(c->written.empty()) << "answered before the node knew the log's epoch";
    srv->resume_epoch("E1", 1, true);  // the recent entries follow, from offset 1
    settle();
    EXPECT_TRUE(c->written.empty()) << "answered before the log's recent entries were in";
    history(1, "d1");
    history(2, "d2");
    history(3, "d3");
    settle();
    EXPECT_TRUE(c->written.empty());
    srv->resume_epoch("E1", 0);  // all of them are in
    ASSERT_TRUE(run_until([&] { return frames_of(c->written).size() >= 4; }))
        << "got " << frames_of(c->written).size() << " frames";
    EXPECT_EQ(frames_of(c->written),
              (std::vector<std::string>{"@resumed w E1 2 ok", "2 2", "d2", "d3"}));
    EXPECT_EQ(srv->counters().resume_gaps, 0u);
    EXPECT_TRUE(fetches.empty()) << "the log was read for what the node holds";
}

// A request that comes while the recent entries are on their way waits too (a client that
// asks for "new" must not start from the oldest of them), and is answered with them in.
TEST_F(resume_test, a_request_during_the_history_load_waits_for_its_end) {
    srv->resume_epoch("E1", 5, true);
    history(5, "d5");
    settle();
    auto c = connect("mem:c");
    c->feed(encode_frame("@resume n"));
    settle();
    EXPECT_TRUE(c->written.empty());
    history(6, "d6");
    srv->resume_epoch("E1", 0);
    ASSERT_TRUE(run_until([&] { return !c->written.empty(); }));
    settle();
    EXPECT_EQ(frames_of(c->written), (std::vector<std::string>{"@resumed n E1 7 new"}));
}

// The same client asking from before the log's oldest entry the node holds: the log is asked
// for it, and nothing older is there, so the answer says how much was lost.
TEST_F(resume_test, a_request_older_than_the_node_asks_the_log_and_reports_the_gap) {
    srv->resume_epoch("E1", 5, true);
    history(5, "d5");
    history(6, "d6");
    srv->resume_epoch("E1", 0);
    settle();
    auto c = connect("mem:c");
    c->feed(encode_frame("@resume w E1 1"));
    ASSERT_TRUE(run_until([&] { return frames_of(c->written).size() >= 3; }));
    EXPECT_EQ(fetches, (std::vector<std::uint64_t>{2}));
    const auto got = frames_of(c->written);
    EXPECT_EQ(got[0], "@resumed w E1 5 gap 3");
    EXPECT_EQ(got[1], "5 2");
    EXPECT_EQ(got[2], "d5");
    EXPECT_EQ(srv->counters().resume_gaps, 1u);
}
