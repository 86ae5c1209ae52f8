// The listener: binds (with the [::] dual-stack fallback to IPv4), accepts with a backoff when
// out of descriptors, and turns away clients over max_clients. Admitted connections become
// transports handed to `admit`.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "framecast/io/server.hpp"
#include "framecast/io/transport.hpp"
#include "log_throttle.hpp"
#include "memory_budget.hpp"

namespace boost::asio::ssl {
class context;
}

namespace framecast::io {

class tls_transport;
class jwt_verifier;
class cert_authority;
struct identity;

class listener {
public:
    // `who` is null unless auth is on.
    using admit_fn = std::function<void(std::unique_ptr<transport>, const identity* who)>;
    // `clients` tells how many are connected now (for max_clients).
    listener(asio::io_context& io, const server_options& opts, server_counters& counters,
             const memory_budget& budget, std::function<std::size_t()> clients, admit_fn admit);

    ~listener();

    asio::ip::tcp::endpoint listen(const asio::ip::tcp::endpoint& ep);
    asio::ip::tcp::endpoint listen_any(std::uint16_t port);
    // Starts an accept loop per bound endpoint.
    void start();
    // Closes every acceptor; the loops end.
    void close() noexcept;
    // A connection from another listener (the WebSocket gateway): authenticated first when
    // auth is on, then admitted. `from`: its address for max_per_address (over the limit the
    // connection is closed at once, as a TCP one would be).
    void accept(std::unique_ptr<transport> t, const asio::ip::address* from = nullptr);
    // TLS: loads opts.tls's files again for the handshakes that follow; "" or why not.
    std::string reload_tls();
    // --auth cert: a new permissions table for the connections that follow; "" or why not
    // (the old one stays).
    std::string reload_permissions(std::optional<std::map<std::string, std::string>> table);

private:
    asio::awaitable<void> accept_loop(asio::ip::tcp::acceptor& acceptor);
    void on_accepted(asio::ip::tcp::socket socket);
    // TLS handshake and/or authentication, before the connection becomes a client.
    asio::awaitable<void> prepare(asio::ip::tcp::socket socket, std::string peer,
                                  std::shared_ptr<void> slot);
    asio::awaitable<void> authenticate_then_admit(std::unique_ptr<transport> t, std::string peer);
    // --auth cert: admits `t` as its certificate's identity, or tells it why not and closes it.
    // Over TCP or wss:// alike: `t`'s peer_certificate().
    void admit_certificate(std::unique_ptr<transport> t, const std::string& peer);
    // Why `socket` is turned away (empty: admit it); the log line's throttle to use.
    std::string refusal(const asio::ip::address& addr, log_throttle*& throttle);
    // A slot counted against `addr` until the returned token is released.
    std::shared_ptr<void> take_slot(const std::string& key);

    asio::io_context& io_;
    const server_options& opts_;
    server_counters& counters_;
    const memory_budget& budget_;
    std::function<std::size_t()> clients_;
    admit_fn admit_;
    std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> acceptors_;
    std::shared_ptr<asio::ssl::context> tls_;  // null: plain TCP
    std::unique_ptr<jwt_verifier> auth_;       // null: no token authentication
    std::unique_ptr<cert_authority> certs_;    // null: no certificate identities
    std::size_t handshakes_ = 0;  // connections in prepare() (count as clients for max_clients)
    bool closed_ = false;
    std::chrono::steady_clock::time_point last_error_log_{};
    // Connections per address (IPv4, or an IPv6 /64), for max_per_address. Shared with the
    // slots' release, which may run after the listener is gone.
    std::shared_ptr<std::unordered_map<std::string, std::size_t>> per_address_ =
        std::make_shared<std::unordered_map<std::string, std::size_t>>();
    log_throttle full_log_, per_address_log_, memory_log_;
};

}  // namespace framecast::io
