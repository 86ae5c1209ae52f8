// framecast send --reconnect and pub --reconnect (docs/resume.md, "Publishing"): publishing
// that survives reconnects. Each connection begins with "@publish NONCE PUBLISHER FIRST"; the
// server's "@published NONCE LAST" says what it already has, and the client sends, in order,
// every message after LAST; the server's cumulative "@ack NONCE SEQ" frees what it accepted.
// What is neither acknowledged nor sent stays in a bounded resend buffer (--max-unacked): when
// it is full, the input is not read until acknowledgements make room.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "framecast/io/asio.hpp"
#include <boost/asio/awaitable.hpp>
#include <CLI/CLI.hpp>

#include "cli.hpp"
#include "framecast/codec.hpp"
#include "framecast/io/client.hpp"

namespace framecast::app {

struct publish_options {
    std::string target;
    std::string publisher;                 // empty: random, for this run
    std::uint64_t max_unacked = 8u << 20;  // bytes held for resending, at most
    std::size_t frames_per_message = 1;    // pub: 2 (the PUB command and the payload)
    bool channels = false;                 // pub: notices arrive as pairs ($sys.error ...)
    double connect_timeout = 10;
    double reconnect_max = 30;
    codec_options codec;
};

// The --reconnect, --reconnect-max, --publisher-id and --max-unacked options of send and pub.
// `reconnect` is the flag the others need.
void add_publish_options(CLI::App& cmd, bool& reconnect, publish_options& opts);

// Publishes everything `queue` holds until it is closed and every message is acknowledged,
// reconnecting with backoff when a connection fails. Exit codes: ok; failure when the server
// refused the request, did not answer it within the connect timeout (it is not running
// --publish-acks), or (channels) refused a command; others as connect's.
asio::awaitable<exit_code> run_reliable_publish(const publish_options& opts,
                                                std::shared_ptr<io::send_queue> queue);

}  // namespace framecast::app
