// libFuzzer target: arbitrary bytes from one client into a real, in-process server session.
//
// One server (publish on, no welcome, max_message 4096) lives for the whole run, with one
// observer client connected once. Per input: a fresh client connects, writes the input, half-
// closes, and the io_context runs until the server has closed that client. Then the server
// broadcasts a sentinel longer than max_message (so no client frame can look like it) and the
// observer reads up to it. Checks:
//   - the frames the observer got are exactly the frames the reference decoder finds in the
//     input before its first error (publish relays each frame to every other client);
//   - the client was closed (not left hanging), the observer is still connected and served;
//   - no crash, no sanitizer report, nothing stuck (libFuzzer's -timeout).
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "framecast/io/asio.hpp"
#include <boost/asio/io_context.hpp>
#include <spdlog/spdlog.h>

#include "framecast/io/server.hpp"
#include "reference_decoder.hpp"

using namespace framecast;
using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t max_message = 4096;
constexpr auto give_up_after = 5s;  // far beyond what loopback needs; then it is a hang

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "session fuzz: %s\n", what);
    std::abort();
}

int connect_to(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
        fail("connect() failed");
    }
    return fd;
}

struct harness {
    asio::io_context io;
    io::server srv;
    std::uint16_t port = 0;
    int observer = -1;
    std::string observer_bytes;  // received, not yet decoded
    std::string sentinel = std::string(max_message + 1, 'S');
    codec_options observer_codec{.header_size = default_header_size, .max_message = max_message + 1};

    static io::server_options options() {
        io::server_options o;
        o.codec.max_message = max_message;
        o.welcome = "";
        o.publish = true;
        o.idle_timeout = 0ms;  // the client always half-closes; EOF ends every session
        return o;
    }

    harness() : srv(io, options()) {
        port = srv.listen({asio::ip::make_address("127.0.0.1"), 0}).port();
        srv.start();
        observer = connect_to(port);
        step_until([&] { return srv.counters().clients_current == 1; }, "observer not accepted");
    }

    // Runs the server a little at a time, reading the observer, until `done()`.
    template <class F>
    void step_until(F done, const char* what) {
        auto deadline = std::chrono::steady_clock::now() + give_up_after;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) fail(what);
            step();
        }
    }

    // Runs what is ready (waiting at most 1 ms for something to be), then reads the observer.
    // (Not run_for(1ms): that always takes the whole millisecond.)
    void step() {
        io.run_one_for(1ms);
        io.poll();
        read_observer();
    }

    void read_observer() {
        char buf[65536];
        for (;;) {
            ssize_t n = ::recv(observer, buf, sizeof buf, 0);
            if (n > 0) {
                observer_bytes.append(buf, static_cast<std::size_t>(n));
                continue;
            }
            if (n == 0) fail("the server closed the observer");
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EINTR) continue;
            fail("observer recv() failed");
        }
    }

    // Decodes the observer's bytes up to the sentinel; false if it has not arrived yet.
    bool take_until_sentinel(std::vector<std::string>& frames) {
        auto r = fuzz::reference_decode(observer_bytes, observer_codec);
        // Incomplete tail: truncated is fine, anything else means the server sent garbage.
        if (r.error && r.error != errc::truncated_frame) fail("the server sent a malformed frame");
        for (std::size_t i = 0; i < r.frames.size(); ++i) {
            if (r.frames[i] == sentinel) {
                if (i + 1 != r.frames.size() || r.error) fail("bytes after the sentinel");
                frames.assign(r.frames.begin(), r.frames.begin() + static_cast<std::ptrdiff_t>(i));
                observer_bytes.clear();
                return true;
            }
        }
        return false;
    }

    void run_one(std::string_view input) {
        const auto accepted = srv.counters().clients_accepted;
        int fd = connect_to(port);
        step_until([&] { return srv.counters().clients_accepted == accepted + 1; },
                   "fuzz client not accepted");
        std::size_t sent = 0;
        bool write_failed = false;
        while (sent < input.size() && !write_failed) {
            ssize_t n = ::send(fd, input.data() + sent, input.size() - sent, MSG_NOSIGNAL);
            if (n > 0) {
                sent += static_cast<std::size_t>(n);
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
                step();
            } else {
                write_failed = true;  // the server closed us for bad input: fine
            }
        }
        ::shutdown(fd, SHUT_WR);
        step_until([&] { return srv.counters().clients_current == 1; },
                   "the server did not close the fuzz client");
        ::close(fd);

        srv.broadcast(sentinel);
        std::vector<std::string> got;
        step_until([&] { return take_until_sentinel(got); }, "sentinel not received");

        auto expected = fuzz::reference_decode(input, srv.options().codec);
        if (got != expected.frames) {
            std::fprintf(stderr, "observer got %zu frames, reference decoded %zu (error: %s)\n",
                         got.size(), expected.frames.size(), expected.error.message().c_str());
            fail("relayed frames differ from the reference decoder");
        }
        if (srv.client_count() > 2) fail("sessions left behind");
    }
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);  // one log line per connection would dominate
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static harness h;
    h.run_one({reinterpret_cast<const char*>(data), size});
    return 0;
}
