// What `framecast sub`, `framecast pub` and `framecast chat --room` share on a `serve
// --channels` server (docs/channels.md): command frames out, (channel, payload) pairs in, and
// the notices on `$sys.` told apart from deliveries.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "framecast/io/client.hpp"

namespace framecast::app {

inline constexpr std::string_view sys_ok = "$sys.ok";
inline constexpr std::string_view sys_error = "$sys.error";
inline constexpr std::string_view sys_pong = "$sys.pong";

// Pairs the frames a channels server sends: every delivery and every notice is a channel frame
// then a payload frame. Calls `on_pair(channel, payload)`; its false stops the reader.
class pair_reader final : public io::frame_handler {
public:
    using pair_fn = std::function<bool(std::string_view channel, std::string_view payload)>;
    using idle_fn = std::function<void()>;
    explicit pair_reader(pair_fn on_pair, idle_fn on_idle = {})
        : on_pair_(std::move(on_pair)), on_idle_(std::move(on_idle)) {}

    bool on_frame(std::string_view payload) override {
        if (!have_channel_) {
            channel_.assign(payload);
            have_channel_ = true;
            return true;
        }
        have_channel_ = false;
        return on_pair_(channel_, payload);
    }
    void on_idle() override {
        if (on_idle_) on_idle_();
    }
    // The connection ended between a channel frame and its payload.
    bool mid_pair() const noexcept { return have_channel_; }

private:
    pair_fn on_pair_;
    idle_fn on_idle_;
    std::string channel_;
    bool have_channel_ = false;
};

}  // namespace framecast::app
