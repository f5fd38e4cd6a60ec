// API authentication: bearer tokens from the config, stored only as their
// SHA-256, each with a name (recorded as the credential of every event it
// makes) and a role. Roles are ordered: read < write < admin.
//   read:  GET /v1/subscribers/{id}, GET /v1/purposes, GET /metrics
//   write: consents and bindings
//   admin: import and policy reload
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "consentd/sha256.hpp"

namespace optgate::consentd {

enum class Role : uint8_t { none, read, write, admin };

std::string_view to_string(Role r) noexcept;
std::optional<Role> parse_role(std::string_view s) noexcept;

struct Token {
    std::string name;
    Role role = Role::read;
    Digest sha256{};
    friend bool operator==(const Token&, const Token&) = default;
};

struct Caller {
    const Token* token = nullptr;  // null: no or unknown token
    bool presented = false;        // an Authorization header was sent
};

class TokenTable {
public:
    explicit TokenTable(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

    // `authorization` is the header value ("Bearer <token>"), possibly empty.
    // Compares the token's hash with every configured hash, each in constant
    // time, so timing says nothing about which or how much matched.
    Caller authenticate(std::string_view authorization) const;

    const std::vector<Token>& tokens() const noexcept { return tokens_; }

private:
    std::vector<Token> tokens_;
};

// What `consentd --hash-token` prints for a token read on stdin.
std::string hash_token(std::string_view token);

}  // namespace optgate::consentd
