// python_float_repr against Python's own repr() (vectors generated with CPython 3.11:
// value.hex() and repr(value)); time_message's shape.
#include <chrono>

#include <gtest/gtest.h>

#include "framecast/io/sources.hpp"

namespace {

struct vector_case {
    double value;
    const char* python;
};

const vector_case cases[] = {
    {0x1.720abb2c12420p+30, "1552068299.01783"},
    {0x1.720abb2c00000p+30, "1552068299.0"},
    {0x0.0p+0, "0.0"},
    {-0x0.0p+0, "-0.0"},
    {0x1.0000000000000p+0, "1.0"},
    {0x1.999999999999ap-4, "0.1"},
    {0x1.1c37937e08000p+53, "1e+16"},
    {0x1.c6bf526340000p+49, "1000000000000000.0"},
    {0x1.c12218377de66p+46, "123456789012345.6"},
    {0x1.a36e2eb1c432dp-14, "0.0001"},
    {0x1.4f8b588e368f1p-17, "1e-05"},
    {0x1.f75104d551d69p-17, "1.5e-05"},
    {0x1.f75104d551d69p-14, "0.00012"},
    {0x1.4000000000000p+1, "2.5"},
    {-0x1.e000000000000p+1, "-3.75"},
    {0x1.7e43c8800759cp+996, "1e+300"},
    {0x0.0000000000001p-1022, "5e-324"},
    {0x1.fffffffffffffp+1023, "1.7976931348623157e+308"},
    {0x1.1c37937e07fffp+53, "9999999999999998.0"},
    {0x1.ac1ebdb40caf3p+30, "1795665773.012387"},
    {0x1.ac1ebdb51de6ap+30, "1795665773.2792"},
    {0x1.18b54f22aeb00p+50, "1234567890123456.0"},
    {0x1.5ee2a2eb5a5c4p+53, "1.2345678901234568e+16"},
    {0x1.b5618d1bac2d9p+31, "3669018253.836285"},
    {0x1.7a75968ba7033p+30, "1587373474.913098"},
    {0x1.75b70ee08f42ap+31, "3134949232.279805"},
    {0x1.af0d4a3b0ac8ap+31, "3615925533.521062"},
    {0x1.bc5688f1b25a4p+31, "3727377528.848345"},
    {0x1.732063816ef50p+31, "3113234880.716713"},
    {0x1.9ee8cdce29bfap+31, "3480512231.08154"},
    {0x1.bc4d5db42c06ep+30, "1863538541.042995"},
    {0x1.99a47e70b6c61p+31, "3436330808.35698"},
    {0x1.9e4a69dc8e784p+31, "3475322094.278261"},
    {0x1.4c6b4c545106fp+31, "2788533802.158256"},
    {0x1.e771356ad1e26p+30, "2044480858.704965"},
    {0x1.9138cf90c79f2p+30, "1682846692.194943"},
    {0x1.488e1a9a333dbp+31, "2756119885.10008"},
    {0x1.fd5d7171fb09ap+29, "1068215854.247577"},
    {0x1.9992720b34335p+30, "1717869698.800977"},
    {0x1.1c5ced11b12bap+30, "1192704836.423018"},
    {0x1.07dc059dd1d04p+31, "2213413582.909792"},
    {0x1.b68361d5d6b0ep+31, "3678515434.919318"},
    {0x1.474e342ab6944p+31, "2745637397.3566"},
    {0x1.5c6b1824c8213p+31, "2922744850.390878"},
    {0x1.acef76164bd9bp+31, "3598170891.148145"},
    {0x1.7e75e324065d8p+30, "1604155593.006216"},
    {0x1.3b72506a27ed2p+31, "2646157365.077981"},
    {0x1.14f365fbc6f26p+30, "1161615742.944284"},
    {0x1.80e5bd86503f1p+31, "3228753603.156731"},
    {0x1.01b627ca41390p+31, "2161841125.127388"},
    {0x1.594fcc993ae88p+31, "2896684620.615055"},
    {0x1.ab62a6e51926fp+31, "3585168242.549125"},
    {0x1.95f41ac0be734p+31, "3405385056.371973"},
    {0x1.52066b7411da3p+31, "2835559866.034868"},
    {0x1.e7f0fc88e9542p+30, "2046574370.22786"},
    {0x1.2c023c07f7037p+31, "2516655619.982448"},
    {0x1.0d3159ebe1aa8p+30, "1129076346.970377"},
    {0x1.0d5d4e9027c18p+31, "2259593032.077648"},
    {0x1.bc74cd844ceabp+31, "3728369346.150228"},
    {0x1.26706d7542581p+31, "2469934778.629578"},
    {0x1.9a11593506c46p+31, "3439897754.513217"},
    {0x1.aa468e4b9dbf9p+31, "3575858981.808102"},
    {0x1.5e2b57a11c925p+30, "1468716520.277902"},
};

TEST(PythonFloatRepr, MatchesCPython) {
    for (const auto& c : cases) {
        EXPECT_EQ(framecast::io::python_float_repr(c.value), c.python) << c.python;
    }
}

TEST(PythonFloatRepr, SpecialValues) {
    EXPECT_EQ(framecast::io::python_float_repr(1.0 / 0.0), "inf");
    EXPECT_EQ(framecast::io::python_float_repr(-1.0 / 0.0), "-inf");
}

TEST(TimeMessage, LikeTheTutorial) {
    using namespace std::chrono;
    system_clock::time_point t{microseconds(1552068299017830)};
    EXPECT_EQ(framecast::io::time_message(t), "The time is 1552068299.01783");
    EXPECT_EQ(framecast::io::time_message(system_clock::time_point{seconds(1552068299)}),
              "The time is 1552068299.0");
}

}  // namespace
