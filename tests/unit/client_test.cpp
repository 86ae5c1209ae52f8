// The client library in-process: a frame_writer on one end of a loopback connection, read_frames
// on the other.
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "framecast/io/asio.hpp"
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "framecast/io/client.hpp"

namespace framecast::io {
namespace {

using namespace std::chrono_literals;

struct collector : frame_handler {
    std::vector<std::string> frames;
    std::vector<std::string> headers;
    std::string streamed;
    std::size_t stop_after = 0;

    bool on_frame(std::string_view payload) override {
        frames.emplace_back(payload);
        return stop_after == 0 || frames.size() < stop_after;
    }
    bool on_begin(std::uint64_t, std::string_view header) override {
        headers.emplace_back(header);
        return true;
    }
    bool on_data(std::string_view piece) override {
        streamed.append(piece);
        return true;
    }
    bool on_end() override {
        frames.push_back(std::move(streamed));
        streamed.clear();
        return true;
    }
};

class client_test : public ::testing::Test {
protected:
    // Runs `server(socket)` on an accepted connection and `client(socket)` on a connected one,
    // both to completion (or fails after 20 s).
    template <typename Server, typename Client>
    void run(Server server, Client client) {
        tcp::acceptor acceptor(io_, {asio::ip::make_address("127.0.0.1"), 0});
        const auto port = acceptor.local_endpoint().port();
        int done = 0;
        asio::co_spawn(
            io_,
            [&]() -> asio::awaitable<void> {
                client_stream stream(co_await acceptor.async_accept(asio::use_awaitable));
                co_await server(stream);
            },
            [&](std::exception_ptr e) {
                if (e) std::rethrow_exception(e);
                ++done;
            });
        asio::co_spawn(
            io_,
            [&]() -> asio::awaitable<void> {
                client_stream stream(io_.get_executor());
                std::string what;
                auto ec = co_await async_connect(stream.socket(), "127.0.0.1", port, 5s, what);
                EXPECT_FALSE(ec) << what;
                co_await client(stream);
            },
            [&](std::exception_ptr e) {
                if (e) std::rethrow_exception(e);
                ++done;
            });
        io_.run_for(20s);
        EXPECT_EQ(done, 2) << "timed out";
    }

    asio::io_context io_;
};

// The writing side of a test: every payload through send_queue and frame_writer, then FIN.
// Returns the bytes written.
asio::awaitable<std::size_t> write_all(client_stream& socket, const std::vector<std::string>& payloads) {
    auto queue = std::make_shared<send_queue>();
    for (const auto& p : payloads) EXPECT_FALSE(queue->push(p));
    queue->close();
    frame_writer writer(co_await asio::this_coro::executor, queue);
    EXPECT_FALSE(co_await writer.run(socket));
    co_return writer.bytes_written();
}

std::vector<std::string> sample_payloads() {
    std::vector<std::string> out;
    for (int i = 0; i < 5000; ++i) {
        out.push_back(std::string(static_cast<std::size_t>(i % 101), static_cast<char>('a' + i % 26)));
    }
    return out;
}

TEST_F(client_test, writer_to_reader_with_every_buffer_size) {
    for (std::size_t buffer_size : {1u, 7u, 16u, 4096u, 262144u}) {
        SCOPED_TRACE(buffer_size);
        io_.restart();
        const auto payloads = sample_payloads();
        collector got;
        read_result res;
        run(
            [&](client_stream& socket) -> asio::awaitable<void> {
                const std::size_t written = co_await write_all(socket, payloads);
                std::size_t expected = 0;
                for (const auto& p : payloads) expected += 10 + p.size();
                EXPECT_EQ(written, expected);
            },
            [&](client_stream& socket) -> asio::awaitable<void> {
                decoder dec;
                std::vector<char> buffer(buffer_size);
                res = co_await read_frames(socket, dec, buffer, got);
            });
        EXPECT_FALSE(res.ec) << res.message;
        EXPECT_FALSE(res.stopped);
        EXPECT_EQ(got.frames, payloads);
    }
}

TEST_F(client_test, large_frames_are_read_into_the_decoder_and_its_buffer_kept) {
    // Frames larger than the read buffer: the rest of each is read straight into the decoder
    // (payload_space), and with retain_capacity the buffer serves the next large frame too.
    std::vector<std::string> payloads;
    for (std::size_t size : {300u * 1024, 5u, 1024u * 1024, 64u * 1024, 1024u * 1024 - 3, 0u}) {
        payloads.push_back(std::string(size, static_cast<char>('A' + payloads.size())));
        if (size > 10) payloads.back()[size / 2] = '!';  // not one repeated byte throughout
    }
    collector got;
    read_result res;
    std::size_t retained = 0;
    run(
        [&](client_stream& socket) -> asio::awaitable<void> { co_await write_all(socket, payloads); },
        [&](client_stream& socket) -> asio::awaitable<void> {
            decoder dec({.max_message = 2 * 1024 * 1024});
            dec.retain_capacity(dec.options().max_message);
            std::vector<char> buffer(64 * 1024);
            res = co_await read_frames(socket, dec, buffer, got);
            retained = dec.buffered_capacity();
        });
    EXPECT_FALSE(res.ec) << res.message;
    ASSERT_EQ(got.frames.size(), payloads.size());
    for (std::size_t i = 0; i < payloads.size(); ++i) EXPECT_TRUE(got.frames[i] == payloads[i]) << i;
    EXPECT_GE(retained, 1024u * 1024);
}

TEST_F(client_test, streaming_mode_reports_header_bytes_as_received) {
    const std::string stream = "  3       abc0         " + encode_frame("last one");
    collector got;
    read_result res;
    run(
        [&](client_stream& socket) -> asio::awaitable<void> {
            co_await socket.write(asio::buffer(stream));
            co_await socket.shutdown_send();
        },
        [&](client_stream& socket) -> asio::awaitable<void> {
            decoder dec({}, decode_mode::streaming);
            std::vector<char> buffer(3);
            res = co_await read_frames(socket, dec, buffer, got);
        });
    EXPECT_FALSE(res.ec) << res.message;
    EXPECT_EQ(got.headers, (std::vector<std::string>{"  3       ", "0         ", "8         "}));
    EXPECT_EQ(got.frames, (std::vector<std::string>{"abc", "", "last one"}));
}

TEST_F(client_test, handler_stops_the_reader) {
    collector got;
    got.stop_after = 3;
    read_result res;
    run(
        [&](client_stream& socket) -> asio::awaitable<void> {
            std::string frames;
            for (int i = 0; i < 10; ++i) append_frame(frames, "m" + std::to_string(i));
            co_await socket.write(asio::buffer(frames));
        },
        [&](client_stream& socket) -> asio::awaitable<void> {
            decoder dec;
            std::vector<char> buffer(1024);
            res = co_await read_frames(socket, dec, buffer, got);
        });
    EXPECT_TRUE(res.stopped);
    EXPECT_EQ(got.frames, (std::vector<std::string>{"m0", "m1", "m2"}));
}

TEST_F(client_test, idle_timeout) {
    collector got;
    read_result res;
    run(
        [&](client_stream& socket) -> asio::awaitable<void> {
            co_await socket.write(asio::buffer(encode_frame("one")));
            asio::steady_timer wait(socket.get_executor(), 1s);
            co_await wait.async_wait(asio::use_awaitable);  // silent long after the timeout
        },
        [&](client_stream& socket) -> asio::awaitable<void> {
            decoder dec;
            std::vector<char> buffer(1024);
            auto started = std::chrono::steady_clock::now();
            res = co_await read_frames(socket, dec, buffer, got, {100ms});
            EXPECT_LT(std::chrono::steady_clock::now() - started, 900ms);
        });
    EXPECT_EQ(res.ec, asio::error::timed_out);
    EXPECT_EQ(got.frames, std::vector<std::string>{"one"});
}

TEST_F(client_test, truncated_frame) {
    collector got;
    read_result res;
    run(
        [&](client_stream& socket) -> asio::awaitable<void> {
            co_await socket.write(asio::buffer(std::string("28        1234567")));
        },
        [&](client_stream& socket) -> asio::awaitable<void> {
            decoder dec;
            std::vector<char> buffer(16);
            res = co_await read_frames(socket, dec, buffer, got);
        });
    EXPECT_EQ(res.ec, errc::truncated_frame);
    EXPECT_EQ(res.message, "connection closed after 7 of 28 payload bytes");
}

TEST(client, connect_refused_names_the_address) {
    asio::io_context io;
    tcp::acceptor probe(io, {asio::ip::make_address("127.0.0.1"), 0});
    const auto port = probe.local_endpoint().port();
    probe.close();
    error_code ec;
    std::string what;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
            tcp::socket socket(io);
            ec = co_await async_connect(socket, "127.0.0.1", port, 5s, what);
        },
        asio::detached);
    io.run_for(10s);
    EXPECT_EQ(ec, asio::error::connection_refused);
    EXPECT_EQ(what, "cannot connect to 127.0.0.1:" + std::to_string(port) + ": Connection refused");
}

// queue_lines frames what a pipe gives, line by line, in place: the bytes queued are exactly
// each line's frame (with the command before each and after the last), however many lines one
// read holds (here far more than its first buffer: 300,000 empty lines in 300 KB).
std::string run_queue_lines(const std::string& input, send_queue& q, std::string& what,
                            error_code& ec, std::string_view before = {},
                            std::string_view after = {}) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    std::thread writer([&] {
        std::size_t done = 0;
        while (done < input.size()) {
            const ssize_t n = ::write(fds[1], input.data() + done, input.size() - done);
            if (n <= 0) break;
            done += static_cast<std::size_t>(n);
        }
        ::close(fds[1]);
    });
    std::string out;
    std::thread drain([&] {  // the queue holds at most 4 MiB: take while it fills
        for (;;) {
            const auto r = q.take(out, [] {});
            if (r == send_queue::take_result::closed) break;
            if (r == send_queue::take_result::empty) std::this_thread::yield();
        }
    });
    ec = queue_lines(fds[0], q, what, before, after);
    writer.join();
    drain.join();
    ::close(fds[0]);
    return out;
}

TEST(client, queue_lines_frames_every_line_in_place) {
    std::string input, want;
    for (int i = 0; i < 1000; ++i) {
        const std::string line(static_cast<std::size_t>(i % 40), static_cast<char>('a' + i % 26));
        input += line + (i % 2 ? "\r\n" : "\n");
        want += encode_frame("B") + encode_frame(line);
    }
    input += "last line without a newline";
    want += encode_frame("B") + encode_frame("last line without a newline") + encode_frame("END");
    send_queue q;
    std::string what;
    error_code ec;
    const std::string got = run_queue_lines(input, q, what, ec, encode_frame("B"), encode_frame("END"));
    EXPECT_FALSE(ec) << what;
    EXPECT_EQ(got, want);

    send_queue many;
    const std::string empties = run_queue_lines(std::string(300'000, '\n'), many, what, ec);
    EXPECT_FALSE(ec) << what;
    std::string want_empties;
    for (int i = 0; i < 300'000; ++i) want_empties += encode_frame("");
    EXPECT_EQ(empties, want_empties);
}

TEST(client, queue_lines_stops_at_a_line_it_cannot_frame_and_names_it) {
    codec_options o;
    o.unit = length_unit::code_points;
    send_queue q(o);
    std::string what;
    error_code ec;
    const std::string got = run_queue_lines("ok\nbad \xc1\xbf\nnever\n", q, what, ec);
    EXPECT_EQ(ec, errc::invalid_utf8);
    EXPECT_NE(what.find("cannot send line 2"), std::string::npos) << what;
    EXPECT_EQ(got, encode_frame("ok"));  // the lines before it are sent
}

}  // namespace
}  // namespace framecast::io
