// A real redis-server for tests: started on a free loopback port in a scratch directory, with
// append-only persistence so a restart keeps the stream; stopped (SIGTERM) by the destructor.
#pragma once

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace framecast::test {

inline int free_loopback_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

class redis_server {
public:
    redis_server() : port_(free_loopback_port()) {
        char tmpl[] = "/tmp/framecast-redis-XXXXXX";
        dir_ = ::mkdtemp(tmpl);
        start();
    }
    ~redis_server() {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    int port() const { return port_; }
    std::string url(const std::string& key) const {
        return "redis://127.0.0.1:" + std::to_string(port_) + "/" + key;
    }

    // Starts redis-server (with `extra` arguments) and returns once it answers PING: with PONG,
    // or, unless `until_loaded`, with LOADING too (it is then still reading its data back).
    // Only this server's answer counts (its working directory): tests run in parallel, and
    // another test's server may have taken the port first. The first start then moves to
    // another port; a restart keeps its port, which the code under test was given.
    void start(const std::vector<std::string>& extra = {}, bool until_loaded = true) {
        for (int attempt = 0; attempt < (started_ ? 1 : 5); ++attempt) {
            if (try_start(extra, until_loaded)) {
                started_ = true;
                return;
            }
            port_ = free_loopback_port();
        }
        throw std::runtime_error("redis-server did not start (last port " + std::to_string(port_) +
                                 "; see " + dir_ + "/redis.log)");
    }

    // Writes `keys` filler keys (one script, so one round trip): data for a restart to load.
    void fill(int keys) {
        timeval tv{5, 0};
        redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
        if (!c || c->err) throw std::runtime_error("cannot connect to redis-server to fill it");
        auto* r = static_cast<redisReply*>(redisCommand(
            c, "EVAL %s 0 %d", "for i=1,tonumber(ARGV[1]) do redis.call('SET','filler:'..i,'x') end",
            keys));
        const bool ok = r && r->type != REDIS_REPLY_ERROR;
        if (r) freeReplyObject(r);
        redisFree(c);
        if (!ok) throw std::runtime_error("redis-server refused the filler script");
    }

    // Runs one command; its reply flattened to text (arrays: one element per line).
    std::string command(const std::vector<std::string>& args) {
        timeval tv{5, 0};
        redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
        if (!c || c->err) throw std::runtime_error("cannot connect to redis-server");
        std::vector<const char*> argv;
        std::vector<std::size_t> lens;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lens.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(
            redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
        std::string out;
        flatten(r, out);
        if (r) freeReplyObject(r);
        redisFree(c);
        return out;
    }

    // SIGTERM: Redis writes its append-only file and exits.
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
    }

private:
    // One start on port_: false when this redis-server exited or never answered.
    bool try_start(const std::vector<std::string>& extra, bool until_loaded) {
        std::vector<std::string> args = {"redis-server", "--port", std::to_string(port_),
                                         "--bind", "127.0.0.1", "--dir", dir_,
                                         "--appendonly", "yes", "--appendfsync", "always",
                                         "--save", "", "--logfile", "redis.log"};
        args.insert(args.end(), extra.begin(), extra.end());
        std::vector<char*> argv;
        for (auto& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        pid_ = ::fork();
        if (pid_ == 0) {
            ::execvp("redis-server", argv.data());
            ::_exit(127);
        }
        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: the port was taken
                pid_ = -1;
                return false;
            }
            timeval tv{0, 200000};
            redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
            bool up = false;
            if (c && !c->err && is_mine(c)) {
                auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
                up = r && (r->type == REDIS_REPLY_STATUS ||
                           (!until_loaded && r->type == REDIS_REPLY_ERROR &&
                            std::string(r->str, r->len).rfind("LOADING", 0) == 0));
                if (r) freeReplyObject(r);
            }
            if (c) redisFree(c);
            if (up) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(50));  // poll interval, bounded above
        }
        stop();
        return false;
    }

    // This server's, not another test's: its working directory is ours (CONFIG GET answers
    // while loading too).
    bool is_mine(redisContext* c) const {
        auto* r = static_cast<redisReply*>(redisCommand(c, "CONFIG GET dir"));
        std::error_code ec;  // a path that is gone is not ours
        const bool mine = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                          std::filesystem::equivalent(std::string(r->element[1]->str,
                                                                  r->element[1]->len),
                                                      dir_, ec);
        if (r) freeReplyObject(r);
        return mine;
    }

    static void flatten(const redisReply* r, std::string& out) {
        if (!r) return;
        if (r->type == REDIS_REPLY_ARRAY) {
            for (std::size_t i = 0; i < r->elements; ++i) flatten(r->element[i], out);
        } else if (r->type == REDIS_REPLY_INTEGER) {
            out += std::to_string(r->integer) + "\n";
        } else if (r->str) {
            out += std::string(r->str, r->len) + "\n";
        }
    }

    int port_;
    std::string dir_;
    pid_t pid_ = -1;
    bool started_ = false;  // once: a restart keeps its port
};

}  // namespace framecast::test
