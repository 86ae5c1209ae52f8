// The error table (FRAMECAST_ERRC_MAP) and the exit codes derived from it. The expectations
// here are written out independently of the table, so a changed mapping fails a test.
#include <gtest/gtest.h>

#include <framecast/error.hpp>

#include <cerrno>
#include <map>
#include <set>
#include <string>
#include <system_error>

using namespace framecast;

namespace {

// The documented CLI exit codes (`framecast --help`), by number.
const std::map<int, std::string> documented_exit_codes{
    {0, "ok"}, {1, "failure"}, {2, "usage"}, {3, "connect failed"}, {4, "malformed header"},
    {5, "message too large"}, {6, "truncated"}, {7, "timed out"}, {8, "address in use"},
    {9, "invalid UTF-8"}, {10, "TLS failed"}, {11, "auth refused"},
    {12, "gap"},
};

// What each error must exit with: the decisions of the issue, not read from the table.
const std::map<std::string, int> expected_exit_by_name{
    {"header_no_digits", 4},      {"header_sign", 4},          {"header_underscore", 4},
    {"header_interior_space", 4}, {"header_non_ascii", 4},     {"header_invalid_char", 4},
    {"message_too_large", 5},     {"length_does_not_fit", 5},  {"invalid_utf8", 9},
    {"truncated_frame", 6},       {"invalid_header_size", 2},
    {"tls_verify_failed", 10},    {"tls_handshake_failed", 10}, {"auth_refused", 11},
    {"resume_gap", 12},
};

}  // namespace

TEST(ErrorTable, ExitCodeEnumHasTheDocumentedNumbers) {
    EXPECT_EQ(static_cast<int>(exit_code::ok), 0);
    EXPECT_EQ(static_cast<int>(exit_code::failure), 1);
    EXPECT_EQ(static_cast<int>(exit_code::usage), 2);
    EXPECT_EQ(static_cast<int>(exit_code::connect_failed), 3);
    EXPECT_EQ(static_cast<int>(exit_code::malformed_header), 4);
    EXPECT_EQ(static_cast<int>(exit_code::message_too_large), 5);
    EXPECT_EQ(static_cast<int>(exit_code::truncated), 6);
    EXPECT_EQ(static_cast<int>(exit_code::timed_out), 7);
    EXPECT_EQ(static_cast<int>(exit_code::address_in_use), 8);
    EXPECT_EQ(static_cast<int>(exit_code::invalid_utf8), 9);
    EXPECT_EQ(static_cast<int>(exit_code::tls_failed), 10);
    EXPECT_EQ(static_cast<int>(exit_code::auth_refused), 11);
    EXPECT_EQ(static_cast<int>(exit_code::gap), 12);
}

TEST(ErrorTable, ValuesAreOneToCountInOrder) {
    ASSERT_EQ(all_errc.size(), errc_count);
    for (std::size_t i = 0; i < all_errc.size(); ++i) {
        EXPECT_EQ(static_cast<std::size_t>(all_errc[i]), i + 1) << name(all_errc[i]);
    }
    // An array of errc_count + 1 counters indexed by value has a slot for each error.
    static_assert(static_cast<std::size_t>(all_errc.back()) == errc_count);
}

TEST(ErrorTable, EveryErrorHasAUniqueNameAMessageAndADocumentedExitCode) {
    std::set<std::string> names, messages;
    for (errc e : all_errc) {
        const std::string n = name(e);
        EXPECT_FALSE(n.empty());
        EXPECT_NE(n, "unknown");
        // A Prometheus label value and a C++ identifier: lower case and '_' only.
        EXPECT_EQ(n.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789"), std::string::npos) << n;
        EXPECT_TRUE(names.insert(n).second) << "duplicate name " << n;

        const std::string m = make_error_code(e).message();
        EXPECT_FALSE(m.empty()) << n;
        EXPECT_NE(m, "unknown framecast error") << n;
        EXPECT_TRUE(messages.insert(m).second) << "duplicate message " << m;

        const int code = static_cast<int>(exit_code_for(e));
        EXPECT_TRUE(documented_exit_codes.contains(code)) << n << " exits " << code;
        EXPECT_NE(code, 0) << n << ": an error must not exit 0";
        // The std::error_code overload agrees with the errc one.
        EXPECT_EQ(exit_code_for(make_error_code(e)), exit_code_for(e)) << n;
    }
}

TEST(ErrorTable, EachErrorExitsWithTheDecidedCode) {
    ASSERT_EQ(errc_count, expected_exit_by_name.size()) << "a new errc needs its exit code decided here";
    for (errc e : all_errc) {
        auto it = expected_exit_by_name.find(name(e));
        ASSERT_NE(it, expected_exit_by_name.end()) << name(e);
        EXPECT_EQ(static_cast<int>(exit_code_for(make_error_code(e))), it->second) << name(e);
    }
}

TEST(ErrorTable, NamesAndMessagesOfKnownErrors) {
    EXPECT_STREQ(name(errc::header_sign), "header_sign");
    EXPECT_STREQ(name(errc::truncated_frame), "truncated_frame");
    EXPECT_EQ(make_error_code(errc::invalid_utf8).message(), "payload is not valid UTF-8");
    EXPECT_EQ(make_error_code(errc::header_no_digits).message(), "frame header holds no digits");
    static_assert(std::string_view(name(errc::invalid_header_size)) == "invalid_header_size");
}

TEST(ErrorTable, ValuesOutsideTheTable) {
    EXPECT_STREQ(name(static_cast<errc>(0)), "unknown");
    EXPECT_STREQ(name(static_cast<errc>(errc_count + 1)), "unknown");
    EXPECT_EQ(std::error_code(static_cast<int>(errc_count + 1), codec_category()).message(),
              "unknown framecast error");
    EXPECT_EQ(exit_code_for(std::error_code(static_cast<int>(errc_count + 1), codec_category())),
              exit_code::failure);
}

TEST(ExitCodeFor, NoErrorIsOk) { EXPECT_EQ(exit_code_for(std::error_code{}), exit_code::ok); }

TEST(ExitCodeFor, TimeoutsInAnyCategoryAreTimedOut) {
    EXPECT_EQ(exit_code_for(std::make_error_code(std::errc::timed_out)), exit_code::timed_out);
    // What the OS reports (std::system_error from a system call): the system category.
    EXPECT_EQ(exit_code_for(std::error_code(ETIMEDOUT, std::system_category())), exit_code::timed_out);
}

TEST(ExitCodeFor, AddressInUse) {
    EXPECT_EQ(exit_code_for(std::error_code(EADDRINUSE, std::system_category())),
              exit_code::address_in_use);
    EXPECT_EQ(exit_code_for(std::make_error_code(std::errc::address_in_use)), exit_code::address_in_use);
}

TEST(ExitCodeFor, OtherSystemErrorsAreFailures) {
    // A reset mid-stream, a broken pipe: failures. A refused connection too: only the caller
    // knows whether it happened while connecting (exit_code::connect_failed).
    EXPECT_EQ(exit_code_for(std::error_code(ECONNRESET, std::system_category())), exit_code::failure);
    EXPECT_EQ(exit_code_for(std::error_code(EPIPE, std::system_category())), exit_code::failure);
    EXPECT_EQ(exit_code_for(std::error_code(ECONNREFUSED, std::system_category())), exit_code::failure);
    EXPECT_EQ(exit_code_for(std::make_error_code(std::errc::invalid_argument)), exit_code::failure);
    // Same number as a framecast error (EBADF on Linux), other category: not confused with it.
    EXPECT_EQ(exit_code_for(std::error_code(static_cast<int>(errc::invalid_utf8), std::generic_category())),
              exit_code::failure);
}
