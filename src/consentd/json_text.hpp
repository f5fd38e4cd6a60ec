// The one JSON writer for what consentd answers and optgatectl prints.
// Boost.JSON writes doubles in scientific notation ("latency_ms":
// 2.03187E-1, and 0 as 0E0), which people and many tools read badly; here
// every number is plain decimal (the shortest text that reads back as the
// same double), and a NaN or infinity, which JSON cannot say, is null.
#pragma once

#include <string>

#include <boost/json/value.hpp>

namespace optgate::consentd {

// `v` as compact JSON text.
std::string json_text(const boost::json::value& v);
// One number as JSON: 0.203187, 12, 1500000000000000000000.
std::string json_number(double d);

}  // namespace optgate::consentd
