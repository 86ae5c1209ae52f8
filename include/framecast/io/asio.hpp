// framecast's I/O runs on Boost.Asio (Debian libboost1.81-dev), the io layer Beast's HTTP and
// WebSocket and Asio's ssl::stream build on. This header names it once for the library, the
// apps and the tests: `framecast::asio` is boost::asio.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>

namespace framecast {

namespace asio = boost::asio;
// What Asio's calls report into (they take Boost's error_code by reference); it converts to
// std::error_code, which is what framecast's own interfaces speak.
using error_code = boost::system::error_code;
// What Asio throws. Not a std::system_error: catch this one around Asio calls.
using system_error = boost::system::system_error;

// Completion token for coroutines that check errors themselves: `auto [ec, n] = co_await ...`.
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

}  // namespace framecast
