// The one JSON writer (json_text.hpp): numbers in plain decimal, never in
// scientific notation, and the same text as Boost.JSON for everything else.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <limits>
#include <random>

#include "consentd/json_text.hpp"

using namespace optgate::consentd;
namespace json = boost::json;

TEST_CASE("doubles are plain decimals that read back as the same value") {
    CHECK(json_number(0.203187) == "0.203187");
    CHECK(json_number(0.0) == "0");
    CHECK(json_number(-2.5) == "-2.5");
    CHECK(json_number(12.0) == "12");
    CHECK(json_number(0.000001) == "0.000001");
    CHECK(json_number(1.5e21) == "1500000000000000000000");
    for (const double d : {0.203187, 1e-9, 123456.789, 3.0e15, 1.0 / 3}) {
        const std::string t = json_number(d);
        INFO(t);
        CHECK(t.find_first_of("eE") == std::string::npos);
        CHECK(json::parse(t).to_number<double>() == d);
    }
}

TEST_CASE("JSON cannot say NaN or infinity: they are null") {
    CHECK(json_number(std::numeric_limits<double>::quiet_NaN()) == "null");
    CHECK(json_number(std::numeric_limits<double>::infinity()) == "null");
    json::object o;
    o["x"] = std::numeric_limits<double>::infinity();
    CHECK(json_text(o) == R"({"x":null})");
}

TEST_CASE("everything but doubles is written as Boost.JSON writes it") {
    const auto v = json::parse(
        R"({"a":[1,-2,18446744073709551615,true,null,"t\"\n\u0001é"],"b":{},"c":[],"d":{"e":0.5,"f":[2.25E-1]}})");
    CHECK(json_text(v) ==
          R"({"a":[1,-2,18446744073709551615,true,null,"t\"\n\u0001é"],"b":{},"c":[],"d":{"e":0.5,"f":[0.225]}})");
    CHECK(json::parse(json_text(v)) == v);
}

TEST_CASE("strings are escaped as Boost.JSON escapes them, every byte value, anywhere in a string") {
    // Each byte alone, and between other text (an escape splits the runs
    // of bytes written as they are).
    for (int c = 0; c < 256; ++c) {
        const char ch = static_cast<char>(c);
        for (const std::string& s :
             {std::string(1, ch), "ab" + std::string(1, ch) + "cd", std::string(1, ch) + "x" + std::string(1, ch)}) {
            std::string out = "prefix";
            append_json_string(out, s);
            INFO("byte " << c);
            CHECK(out == "prefix" + json::serialize(json::string_view(s)));
        }
    }
    // Random strings over all bytes, fixed seed: any one that differs is kept.
    std::mt19937 rng(20261206);
    for (int i = 0; i < 2000; ++i) {
        std::string s(rng() % 40, '\0');
        for (auto& ch : s) ch = static_cast<char>(rng() % 256);
        std::string out;
        append_json_string(out, s);
        CHECK(out == json::serialize(json::string_view(s)));
    }
    std::string empty;
    append_json_string(empty, "");
    CHECK(empty == R"("")");
}

TEST_CASE("integers are the decimal text Boost.JSON writes, at both ends of their range") {
    for (const int64_t n : {int64_t{0}, int64_t{-1}, int64_t{7}, std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max()}) {
        std::string out;
        append_json_number(out, n);
        CHECK(out == json::serialize(json::value(n)));
    }
    for (const uint64_t n : {uint64_t{0}, uint64_t{42}, std::numeric_limits<uint64_t>::max()}) {
        std::string out;
        append_json_number(out, n);
        CHECK(out == json::serialize(json::value(n)));
    }
    // append_json appends: what was in the string stays.
    std::string out = "[";
    append_json(out, json::parse(R"({"k":[1,"v"]})"));
    CHECK(out == R"([{"k":[1,"v"]})");
}
