// The bounds of `serve --channels` (docs/channels.md, "Limits"). Each breach is answered with
// a `$sys.error` notice naming the limit; nothing is dropped silently.
#pragma once

#include <cstddef>

namespace framecast::io {

struct channel_limits {
    std::size_t max_name = 256;              // bytes in a channel name or pattern
    std::size_t max_tokens = 16;             // dot-separated tokens in one name or pattern
    std::size_t max_subscriptions = 10'000;  // patterns one client holds at once
    std::size_t max_channels = 100'000;      // distinct patterns subscribed on the server
};

}  // namespace framecast::io
