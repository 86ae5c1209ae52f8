// Channels with resume and a shared log (serve --channels --resume --backplane), in a real server
// over the in-memory transport, the backplane's events driven by hand in the order it can
// deliver them (src/io/node.cpp posts each to the io thread): RESUME held until the log's
// history is in, a position ahead of the node waiting for the log, repeats dropped, and an
// epoch change closing the clients with positions.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "decode_helpers.hpp"
#include "framecast/io/server.hpp"
#include "memory_harness.hpp"
#include "transport/memory.hpp"

using namespace framecast;
using namespace framecast::io;
using namespace std::chrono_literals;

namespace {

using test::pair_list;
using test::pairs_of;

using test::frame;

struct shared_log_test : ::testing::Test, framecast::io::test_support::memory_harness {
    struct logged {
        std::uint64_t offset, channel_offset;
        relay_unit unit;
    };
    std::vector<logged> log;              // the shared log's entries (for history fetches)
    std::vector<std::uint64_t> fetches;  // the offsets it was asked for

    shared_log_test() {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>(
            "quiet", std::make_shared<spdlog::sinks::null_sink_st>()));
        server_options o;
        o.welcome.clear();
        o.idle_timeout = 0ms;
        o.channels.enabled = true;
        o.resume.enabled = true;
        srv = std::make_unique<server>(io, std::move(o));
        // The log's past: what `log` holds from the offset asked on, a piece of at most 2
        // units (so a replay takes several reads).
        srv->set_history_fetch([this](const std::string&, std::uint64_t from,
                                      std::function<void(server::history_piece)> done) {
            fetches.push_back(from);
            server::history_piece piece;
            for (const auto& [offset, k, u] : log) {
                if (offset + u.messages <= from || piece.units.size() == 2) continue;
                piece.units.emplace_back(offset, u);
                piece.channel_offsets.push_back(k);
            }
            // As Redis: a read from past the end returns the last entry again.
            if (piece.units.empty() && !log.empty()) {
                piece.units.emplace_back(log.back().offset, log.back().unit);
                piece.channel_offsets.push_back(log.back().channel_offset);
            }
            asio::post(io, [done = std::move(done), piece = std::move(piece)] { done(piece); });
        });
        srv->start();
    }
    void settle() {
        io.restart();
        io.poll();
    }
    // A unit of `channel` with `payloads`, as the log delivers it.
    relay_unit unit(const std::string& channel, const std::vector<std::string>& payloads) {
        std::string bytes;
        for (const auto& p : payloads) bytes += frame(channel) + frame(p);
        std::string problem;
        auto u = srv->checked_unit(std::make_shared<const std::string>(bytes), problem);
        EXPECT_TRUE(u) << problem;
        return u;
    }
    bool wait_pairs(const std::shared_ptr<memory_transport::pipe>& p, std::size_t n) {
        return run_until([&] { return pairs_of(p->written).size() >= n; });
    }
};

}  // namespace

TEST_F(shared_log_test, resume_waits_for_the_logs_history_and_so_does_what_follows_it) {
    auto c = connect("c");
    c->feed(frame("RESUME") + frame("RESUME ch E1 1") + frame("SUB ch") + frame("PING"));
    settle();
    EXPECT_EQ(c->written, "");  // the node has no epoch yet: nothing is answered
    srv->resume_epoch("E1", 1, true);  // the recent entries follow
    srv->resume_history(unit("ch", {"h1", "h2"}), 1, 1);
    srv->resume_channel("ch", 2);
    srv->resume_channel("", 0);
    settle();
    EXPECT_EQ(c->written, "");  // still loading
    srv->resume_epoch("E1", 0, false);  // all in
    ASSERT_TRUE(wait_pairs(c, 6));
    // The answers in order; the replayed piece (queued as the queue drains) after the RESUMEs'.
    auto got = pairs_of(c->written);
    const pair_list answers{{"$sys.ok", "RESUME E1"}, {"$sys.resumed", "ch E1 2 ok"},
                            {"$sys.ok", "SUB ch"}, {"$sys.pong", ""}};
    pair_list notices, rest;
    for (const auto& p : got) {
        (p.first == "$sys.ok" || p.first == "$sys.resumed" || p.first == "$sys.pong" ? notices
                                                                                       : rest)
            .push_back(p);
    }
    EXPECT_EQ(notices, answers);
    EXPECT_EQ(rest, (pair_list{{"$sys.pos", "ch 2 1"}, {"ch", "h2"}}));
    // Live, then a repeat of it (a retried read): delivered once.
    srv->broadcast(unit("ch", {"l3"}), nullptr, 3, 3);
    srv->broadcast(unit("ch", {"l3"}), nullptr, 3, 3);
    srv->broadcast(unit("ch", {"l4"}), nullptr, 4, 4);
    ASSERT_TRUE(wait_pairs(c, 10));
    settle();
    got = pairs_of(c->written);
    ASSERT_EQ(got.size(), 10u);
    EXPECT_EQ(got[6], (std::pair<std::string, std::string>{"$sys.pos", "ch 3 1"}));
    EXPECT_EQ(got[7].second, "l3");
    EXPECT_EQ(got[8], (std::pair<std::string, std::string>{"$sys.pos", "ch 4 1"}));
    EXPECT_EQ(got[9].second, "l4");
}

TEST_F(shared_log_test, a_channel_known_only_by_its_offsets_resumes_without_a_false_gap) {
    srv->resume_epoch("E1", 100, true);
    srv->resume_channel("quiet", 7);  // no unit held, but the log numbered it up to 7
    srv->resume_channel("", 0);
    srv->resume_epoch("E1", 0, false);
    auto c = connect("c");
    c->feed(frame("RESUME") + frame("RESUME quiet E1 7") + frame("RESUME quiet2 E1 0") +
            frame("RESUME quiet3 E1 3"));
    ASSERT_TRUE(wait_pairs(c, 3));
    settle();
    const auto got = pairs_of(c->written);
    // quiet: all there; quiet2 (never numbered): starts at 1; quiet3 (offsets the node never
    // saw, ahead of what it holds): waits for the log.
    EXPECT_EQ(got, (pair_list{{"$sys.ok", "RESUME E1"}, {"$sys.resumed", "quiet E1 8 ok"},
                              {"$sys.resumed", "quiet2 E1 1 ok"}, {"$sys.resumed", "quiet3 E1 4 ok"}}));
    EXPECT_FALSE(srv->resume_channel("bad channel name", 3));  // not trusted: refused
}

TEST_F(shared_log_test, a_position_ahead_of_the_node_waits_for_the_log) {
    srv->resume_epoch("E1", 1, false);
    srv->broadcast(unit("ch", {"a1"}), nullptr, 1, 1);
    auto c = connect("c");
    // It had 1..3 from a node further on.
    c->feed(frame("RESUME") + frame("RESUME ch E1 3") + frame("SUB ch"));
    ASSERT_TRUE(wait_pairs(c, 3));
    settle();
    EXPECT_EQ(pairs_of(c->written)[1].second, "ch E1 4 ok");
    srv->broadcast(unit("ch", {"a2", "a3"}), nullptr, 2, 2);  // what it has: not sent again
    settle();
    EXPECT_EQ(pairs_of(c->written).size(), 3u);
    srv->broadcast(unit("ch", {"a4"}), nullptr, 4, 4);
    ASSERT_TRUE(wait_pairs(c, 5));
    srv->broadcast(unit("ch", {"a5"}), nullptr, 5, 5);  // live now
    ASSERT_TRUE(wait_pairs(c, 7));
    settle();
    const auto got = pairs_of(c->written);
    EXPECT_EQ(got, (pair_list{{"$sys.ok", "RESUME E1"}, {"$sys.resumed", "ch E1 4 ok"},
                              {"$sys.ok", "SUB ch"}, {"$sys.pos", "ch 4 1"}, {"ch", "a4"},
                              {"$sys.pos", "ch 5 1"}, {"ch", "a5"}}));
}

TEST_F(shared_log_test, an_epoch_change_closes_the_clients_with_positions) {
    srv->resume_epoch("E1", 1, false);
    auto positioned = connect("p");
    auto plain = connect("q");
    positioned->feed(frame("RESUME") + frame("SUB ch"));
    plain->feed(frame("SUB ch"));
    ASSERT_TRUE(wait_pairs(positioned, 2));
    ASSERT_TRUE(wait_pairs(plain, 1));
    srv->resume_epoch("E2", 1, false);  // the stream was deleted and made again
    ASSERT_TRUE(run_until([&] { return positioned->closed; }));
    srv->broadcast(unit("ch", {"new1"}), nullptr, 1, 1);  // offset 1 again: the new epoch's
    ASSERT_TRUE(wait_pairs(plain, 2));
    EXPECT_EQ(pairs_of(plain->written)[1], (std::pair<std::string, std::string>{"ch", "new1"}));
    auto again = connect("p2");
    again->feed(frame("RESUME") + frame("RESUME ch E1 9"));
    ASSERT_TRUE(wait_pairs(again, 4));
    const auto got = pairs_of(again->written);
    EXPECT_EQ(got[0].second, "RESUME E2");
    EXPECT_EQ(got[1].second, "ch E2 1 epoch");
    EXPECT_EQ(got[3].second, "new1");
}

TEST_F(shared_log_test, a_client_that_half_closes_while_held_still_gets_its_answers) {
    auto c = connect("c");
    auto d = connect("d");
    c->feed(frame("RESUME") + frame("SUB ch"));
    c->feed_eof();  // its side closed before the log answered
    d->feed(frame("RESUME"));
    settle();
    EXPECT_EQ(c->written, "");
    EXPECT_FALSE(c->closed);
    srv->resume_epoch("E1", 1, false);
    ASSERT_TRUE(run_until([&] { return c->closed; }));  // answered, then closed
    EXPECT_EQ(pairs_of(c->written), (pair_list{{"$sys.ok", "RESUME E1"}, {"$sys.ok", "SUB ch"}}));
    ASSERT_TRUE(wait_pairs(d, 1));
    EXPECT_EQ(pairs_of(d->written), (pair_list{{"$sys.ok", "RESUME E1"}}));
}

TEST_F(shared_log_test, a_position_older_than_the_window_is_replayed_from_the_log) {
    // The log: a1..a6 (offsets 1..6 of "a"), b entries between; the node holds from a5 on.
    std::uint64_t offset = 1;
    for (std::uint64_t k = 1; k <= 6; ++k) {
        log.push_back({offset++, k, unit("a", {"a" + std::to_string(k)})});
        log.push_back({offset++, k, unit("b", {"b" + std::to_string(k)})});
    }
    srv->resume_epoch("E1", 9, true);
    for (std::size_t i = 8; i < log.size(); ++i) {
        srv->resume_history(log[i].unit, log[i].offset, log[i].channel_offset);
    }
    srv->resume_epoch("E1", 0, false);
    auto c = connect("c");
    c->feed(frame("RESUME") + frame("RESUME a E1 1") + frame("SUB a"));
    ASSERT_TRUE(wait_pairs(c, 12)) << ::testing::PrintToString(pairs_of(c->written));
    settle();
    pair_list replayed;
    for (const auto& p : pairs_of(c->written)) {
        if (p.first != "$sys.ok") replayed.push_back(p);
    }
    EXPECT_EQ(replayed, (pair_list{{"$sys.resumed", "a E1 2 ok"},
                                   {"$sys.pos", "a 2 1"}, {"a", "a2"},
                                   {"$sys.pos", "a 3 1"}, {"a", "a3"},
                                   {"$sys.pos", "a 4 1"}, {"a", "a4"},
                                   // the window's, in one piece
                                   {"$sys.pos", "a 5 2"}, {"a", "a5"}, {"a", "a6"}}));
    // From the client's offset on (a channel's offsets never pass the log's), a piece at a time.
    ASSERT_GE(fetches.size(), 2u);
    EXPECT_EQ(fetches[0], 2u);
    // Live after it, once.
    srv->broadcast(unit("a", {"a7"}), nullptr, 13, 7);
    ASSERT_TRUE(wait_pairs(c, 14));
    EXPECT_EQ(pairs_of(c->written).back(), (std::pair<std::string, std::string>{"a", "a7"}));
}

TEST_F(shared_log_test, what_the_log_no_longer_has_shows_as_a_hole) {
    std::uint64_t offset = 1;
    for (std::uint64_t k = 1; k <= 6; ++k) log.push_back({offset++, k, unit("a", {"a" + std::to_string(k)})});
    srv->resume_epoch("E1", 5, true);
    for (std::size_t i = 4; i < log.size(); ++i) {
        srv->resume_history(log[i].unit, log[i].offset, log[i].channel_offset);
    }
    srv->resume_epoch("E1", 0, false);
    log.erase(log.begin(), log.begin() + 3);  // trimmed: the log starts at a4
    auto c = connect("c");
    c->feed(frame("RESUME") + frame("RESUME a E1 1"));
    ASSERT_TRUE(wait_pairs(c, 7)) << ::testing::PrintToString(pairs_of(c->written));
    settle();
    const auto got = pairs_of(c->written);
    EXPECT_EQ(got[1].second, "a E1 2 ok");
    EXPECT_EQ(got[2], (std::pair<std::string, std::string>{"$sys.pos", "a 4 1"}));  // 2, 3 gone
    EXPECT_EQ(got, (pair_list{{"$sys.ok", "RESUME E1"}, {"$sys.resumed", "a E1 2 ok"},
                              {"$sys.pos", "a 4 1"}, {"a", "a4"},
                              {"$sys.pos", "a 5 2"}, {"a", "a5"}, {"a", "a6"}}));
}

TEST_F(shared_log_test, a_read_that_does_not_move_on_ends_the_replay_from_the_log) {
    // The log holds a1..a3 and b entries, then nothing this node can read up to its window
    // (a5 at offset 20): reading on would return the last entry again, forever.
    std::uint64_t offset = 1;
    for (std::uint64_t k = 1; k <= 3; ++k) {
        log.push_back({offset++, k, unit("a", {"a" + std::to_string(k)})});
        log.push_back({offset++, k, unit("b", {"b" + std::to_string(k)})});
    }
    srv->resume_epoch("E1", 20, true);
    srv->resume_history(unit("a", {"a5"}), 20, 5);
    srv->resume_epoch("E1", 0, false);
    auto c = connect("c");
    c->feed(frame("RESUME") + frame("RESUME a E1 1"));
    ASSERT_TRUE(wait_pairs(c, 2 + 6)) << ::testing::PrintToString(pairs_of(c->written));
    settle();
    EXPECT_EQ(pairs_of(c->written),
              (pair_list{{"$sys.ok", "RESUME E1"}, {"$sys.resumed", "a E1 2 ok"},
                         {"$sys.pos", "a 2 1"}, {"a", "a2"}, {"$sys.pos", "a 3 1"}, {"a", "a3"},
                         {"$sys.pos", "a 5 1"}, {"a", "a5"}}));  // 4: the hole, shown
    EXPECT_LE(fetches.size(), 5u);  // ended, not read again and again
}
