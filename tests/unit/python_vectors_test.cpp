// Byte streams produced by python3 with the tutorial's own expressions (vectors/make_vectors.py)
// decode to the expected payloads, and our encoder reproduces them exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "decode_helpers.hpp"

using namespace framecast;

namespace {

std::string unhex(const std::string& hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    }
    return out;
}

struct vector_case {
    std::string name;
    codec_options opts;
    bool exact = false;
    std::string wire;
    std::vector<std::string> payloads;
};

std::vector<vector_case> load() {
    std::ifstream in(FRAMECAST_TEST_DIR "/unit/vectors/python_vectors.tsv");
    std::vector<vector_case> cases;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        vector_case c;
        std::string h, unit, exact, wire, payloads;
        std::getline(fields, c.name, '\t');
        std::getline(fields, h, '\t');
        std::getline(fields, unit, '\t');
        std::getline(fields, exact, '\t');
        std::getline(fields, wire, '\t');
        std::getline(fields, payloads, '\t');
        c.opts.header_size = std::stoul(h);
        c.opts.unit = unit == "code_points" ? length_unit::code_points : length_unit::bytes;
        c.exact = exact == "1";
        c.wire = unhex(wire);
        if (payloads != "-") {
            std::istringstream ps(payloads);
            std::string p;
            while (std::getline(ps, p, ',')) c.payloads.push_back(unhex(p.substr(1)));
        }
        cases.push_back(std::move(c));
    }
    return cases;
}

}  // namespace

TEST(PythonVectors, DecodeAndReencode) {
    auto cases = load();
    ASSERT_GE(cases.size(), 10u) << "vectors file missing or short";
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        for (std::size_t chunk : {std::size_t{1}, std::size_t{16}, c.wire.size()}) {
            auto r = test::decode_chunked(c.wire, {chunk}, c.opts);
            ASSERT_FALSE(r.error) << r.message;
            EXPECT_EQ(r.frames, c.payloads) << "chunk " << chunk;
        }
        if (c.exact) {
            std::string ours;
            for (const auto& p : c.payloads) ASSERT_FALSE(append_frame(ours, p, c.opts));
            EXPECT_EQ(ours, c.wire) << "encoder differs from Python";
        }
    }
}
