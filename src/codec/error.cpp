#include "framecast/error.hpp"

namespace framecast {
namespace {

class codec_category_impl final : public std::error_category {
public:
    const char* name() const noexcept override { return "framecast"; }

    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
#define FRAMECAST_ERRC_MESSAGE_(name, message, exit) \
    case errc::name: return message;
            FRAMECAST_ERRC_MAP(FRAMECAST_ERRC_MESSAGE_)
#undef FRAMECAST_ERRC_MESSAGE_
        }
        return "unknown framecast error";
    }
};

}  // namespace

const std::error_category& codec_category() noexcept {
    static const codec_category_impl instance;
    return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), codec_category()}; }

exit_code exit_code_for(std::error_code ec) noexcept {
    if (!ec) return exit_code::ok;
    if (ec.category() == codec_category()) return exit_code_for(static_cast<errc>(ec.value()));
    // Compared as conditions: the system's and the generic category both match.
    if (ec == std::errc::timed_out) return exit_code::timed_out;
    if (ec == std::errc::address_in_use) return exit_code::address_in_use;
    return exit_code::failure;
}

}  // namespace framecast
