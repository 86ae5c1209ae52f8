// What `framecast send` sends: arguments, files (one file = one message) and standard input read
// as lines, as one raw message, or as frames already encoded (`connect -o framed` output), at a
// rate if asked. Runs on a thread of its own: standard input may block.
#pragma once

#include <string>
#include <system_error>
#include <vector>

#include "framecast/io/client.hpp"

namespace framecast::app {

struct send_input {
    std::vector<std::string> messages;  // sent first, one frame each
    std::vector<std::string> files;     // then each file's content as one frame
    std::string format = "lines";       // standard input (when no messages and no files)
    double rate = 0;                    // messages per second; 0: as fast as possible
};

// "100/s", "100", "0.5/s" → messages per second; throws CLI::ValidationError.
double parse_rate(const std::string& text);

// Queues every message of `in`, then closes the queue (also on error). A message over the
// queue's max_message is refused here, before anything is sent of it. Returns the first error
// and sets `what` to a sentence naming the message.
std::error_code feed(const send_input& in, io::send_queue& queue, std::string& what);

}  // namespace framecast::app
