// io::node in-process: its lifecycle stops when asked, a taken port is an error with its code,
// and the metrics endpoint answers on the node's own loop.
#include <gtest/gtest.h>

#include <future>
#include <string>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include "framecast/io/node.hpp"

namespace {

using namespace framecast;
using tcp = asio::ip::tcp;

io::node_options quiet_options() {
    io::node_options o;
    o.listen = {{"127.0.0.1", 0}};
    o.source = io::source_kind::none;
    o.handle_signals = false;
    o.drain_timeout = std::chrono::milliseconds(200);
    return o;
}

// One HTTP/1.0 exchange (the server closes after it): the whole answer.
std::string http_get(std::uint16_t port, const std::string& request) {
    asio::io_context io;
    tcp::socket s(io);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(s, asio::buffer(request));
    std::string answer;
    error_code ec;
    asio::read(s, asio::dynamic_buffer(answer), ec);
    return answer;
}

TEST(Node, StopAskedBeforeRunEndsCleanly) {
    io::node n(quiet_options());
    n.request_stop();
    EXPECT_FALSE(n.run().error);
}

TEST(Node, TakenPortIsAnErrorWithItsCode) {
    asio::io_context io;
    tcp::acceptor holder(io, {asio::ip::make_address("127.0.0.1"), 0});
    auto o = quiet_options();
    o.listen = {{"127.0.0.1", holder.local_endpoint().port()}};
    io::node n(std::move(o));
    EXPECT_EQ(n.run().error, std::errc::address_in_use);
}

TEST(Node, MetricsAnswerOnTheNodesLoop) {
    auto o = quiet_options();
    o.metrics = io::listen_address{"127.0.0.1", 0};
    std::promise<std::uint16_t> metrics_port;
    o.announce = [&](std::string_view line) {
        // No std::regex: GCC 12 warns inside it (maybe-uninitialized) in the sanitizer builds.
        constexpr std::string_view prefix = "metrics on http://127.0.0.1:";
        if (line.starts_with(prefix)) {
            metrics_port.set_value(static_cast<std::uint16_t>(std::stoi(std::string(line.substr(prefix.size())))));
        }
    };
    io::node n(std::move(o));
    auto port = metrics_port.get_future();
    std::thread client([&] {
        auto p = port.get();
        EXPECT_NE(http_get(p, "GET /healthz HTTP/1.0\r\n\r\n").find("200 OK"), std::string::npos);
        auto metrics = http_get(p, "GET /metrics HTTP/1.0\r\n\r\n");
        EXPECT_NE(metrics.find("framecast_clients_connected 0\n"), std::string::npos);
        EXPECT_NE(http_get(p, "PUT /metrics HTTP/1.0\r\n\r\n").find("405"), std::string::npos);
        n.request_stop();
    });
    EXPECT_FALSE(n.run().error);
    client.join();
}

}  // namespace
