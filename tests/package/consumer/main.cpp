// A program outside the framecast tree: encodes a frame and decodes it back.
#include <framecast/codec.hpp>

#include <cstdio>

int main() {
    const std::string wire = framecast::encode_frame("your message here!");
    if (wire != "18        your message here!") return 1;
    framecast::decoder dec;
    std::span<const char> in{wire};
    if (dec.next(in) != framecast::decode_event::frame) return 2;
    std::printf("%.*s\n", static_cast<int>(dec.payload().size()), dec.payload().data());
    return dec.payload() == "your message here!" ? 0 : 3;
}
