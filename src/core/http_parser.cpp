#include "core/http_parser.hpp"

namespace optgate {

bool HttpParser::in_identifier_line(const HttpParserState& st) noexcept {
    switch (st.state) {
    case HttpState::name:
    case HttpState::c_name:
    case HttpState::c_name_ws: return !st.match.dead();
    case HttpState::field_start:  // an obs-fold line may still continue it
    case HttpState::value_ows:
    case HttpState::value:
    case HttpState::value_cr: return st.field == FieldKind::identifier || st.field == FieldKind::pseudonym;
    case HttpState::c_unknown_name:
    case HttpState::c_value_ows:
    case HttpState::c_value:
    case HttpState::c_value_cr:
    case HttpState::c_after_identifier: return true;
    default: return false;
    }
}

}  // namespace optgate
