// A real server over the in-memory transport, for the room tests: clients are pipes whose
// bytes the test feeds and reads, and the test drives the io_context until what it waits for.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "framecast/io/server.hpp"
#include "transport/memory.hpp"

namespace framecast::io::test_support {

struct memory_harness {
    asio::io_context io;
    std::unique_ptr<server> srv;

    // A client named `name` (its peer name in logs), admitted now.
    std::shared_ptr<memory_transport::pipe> connect(const std::string& name) {
        auto p = std::make_shared<memory_transport::pipe>(io.get_executor());
        srv->admit(std::make_unique<memory_transport>(p, name));
        return p;
    }
    // Runs the io_context until `done()`, at most 3 s; false when it never was.
    bool run_until(const std::function<bool()>& done) {
        using namespace std::chrono_literals;
        const auto deadline = std::chrono::steady_clock::now() + 3s;
        while (!done()) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            if (io.stopped()) io.restart();
            io.run_one_for(5ms);
        }
        return true;
    }
};

}  // namespace framecast::io::test_support
