#include "print.hpp"

#include <memory>
#include <span>

#include <spdlog/spdlog.h>

#include "output.hpp"

namespace framecast::app {

std::function<void(const io::relay_unit&)> make_printer(const std::string& format,
                                                        const codec_options& codec) {
    const auto fmt = output_format_of(format);
    auto sink = std::make_shared<output_sink>(fmt, 0, false);
    return [sink, fmt, codec](const io::relay_unit& unit) {
        if (!unit || sink->output_error()) return;
        const std::string_view bytes(unit.bytes->data(), unit.bytes->size());
        sink->on_read(bytes.size());  // a new receive time for -o json
        if (fmt == output_format::framed) {
            sink->on_data(bytes);  // the frames as the client sent them, headers included
        } else {
            // The server decoded these frames already: they are whole and well-formed.
            decoder dec(codec, decode_mode::whole);
            std::span<const char> in(bytes.data(), bytes.size());
            while (dec.next(in) == decode_event::frame) {
                if (fmt == output_format::raw) {
                    sink->on_data(dec.payload());
                    sink->on_end();
                } else {
                    sink->on_frame(dec.payload());
                }
            }
        }
        sink->flush();
        if (const auto& ec = sink->output_error(); ec && ec != std::errc::broken_pipe) {
            spdlog::error("--print: cannot write to standard output: {}", ec.message());
        }
    };
}

}  // namespace framecast::app
