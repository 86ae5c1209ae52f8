// One WebSocket framing of a relay unit, reused for every WebSocket client the unit goes to.
// At fan-out a unit is written to K clients; framing it per client (parse the framecast
// headers, check UTF-8 for text or binary, write a WebSocket header, copy) cost 14x the TCP
// path's copy (docs/bench.md). Framed once, each client costs a lookup and a copy, as a TCP
// client does.
//
// Per thread (a server's clients share its io_context thread), a few entries replaced round
// robin: a unit is written to all its clients within a few units of each other. Keyed by the
// unit's owner through a weak_ptr: the unit's address cannot be reused while the entry exists,
// and the entry does not keep the unit's bytes alive. Units over max_unit bytes are framed per
// client as before, so the cache holds at most entries x max_unit framed bytes per thread.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>

#include "framecast/codec.hpp"

namespace framecast::io {

class ws_frames_cache {
public:
    static constexpr std::size_t entries = 8;
    static constexpr std::size_t max_unit = 64 * 1024;

    // The WebSocket frames of `unit` (whole framecast frames encoded with `codec`): cached,
    // or framed now and cached. Null when the unit is over max_unit bytes or does not parse
    // as whole frames (the caller frames it itself, and reports what is wrong).
    // Shared: a client's socket queues it by reference (it is never changed once made).
    std::shared_ptr<const std::string> get(const std::shared_ptr<const std::string>& unit,
                                           const codec_options& codec);

    // This thread's cache.
    static ws_frames_cache& local();

private:
    struct entry {
        std::weak_ptr<const std::string> owner;
        const std::string* address = nullptr;
        std::size_t header_size = 0;
        length_unit unit = length_unit::bytes;
        std::shared_ptr<const std::string> framed;
    };
    std::array<entry, entries> entries_;
    std::size_t next_ = 0;
};

}  // namespace framecast::io
