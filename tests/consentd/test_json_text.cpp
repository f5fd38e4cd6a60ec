// The one JSON writer (json_text.hpp): numbers in plain decimal, never in
// scientific notation, and the same text as Boost.JSON for everything else.
#include <doctest/doctest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <limits>

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
