// Certificates for the mutual TLS tests, made at test time with the openssl
// command: a throwaway CA, consentd's server certificate for 127.0.0.1, data
// planes' client certificates, and a rogue CA with its own client
// certificate.
#pragma once

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

#include "proto/tls.hpp"
#include "publisher_rig.hpp"

namespace optgate::test_proto {

inline void sh(const std::string& cmd) {
    INFO(cmd);
    REQUIRE(std::system(("(" + cmd + ") >/dev/null 2>&1").c_str()) == 0);
}

// ca.crt/key signs server.crt (CN consentd, SAN IP:127.0.0.1) and
// client.crt (CN edge-tls); rogue-ca signs rogue.crt (CN edge-rogue).
// `more` leaves, signed by ca: each {file name, CN, extra extension lines}.
struct Certs {
    struct Leaf {
        std::string name, cn, ext;
    };
    TempDir dir;
    std::string at(const std::string& f) const { return dir.file(f); }
    explicit Certs(const std::vector<Leaf>& more = {}) {
        const std::string d = dir.path.string();
        auto key = [&](const std::string& name) {
            sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + d + "/" + name + ".key");
        };
        auto ca = [&](const std::string& name) {
            key(name);
            sh("openssl req -x509 -new -key " + d + "/" + name + ".key -out " + d + "/" + name +
               ".crt -days 2 -subj /CN=" + name);
        };
        auto leaf = [&](const std::string& name, const std::string& cn, const std::string& ca_name,
                        const std::string& ext) {
            key(name);
            std::ofstream(d + "/" + name + ".ext") << ext << "\n";
            sh("openssl req -new -key " + d + "/" + name + ".key -out " + d + "/" + name + ".csr -subj /CN=" + cn);
            sh("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/" + ca_name + ".crt -CAkey " + d + "/" +
               ca_name + ".key -CAcreateserial -out " + d + "/" + name + ".crt -days 2 -extfile " + d + "/" + name +
               ".ext");
        };
        ca("ca");
        ca("rogue-ca");
        leaf("server", "consentd", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth");
        leaf("client", "edge-tls", "ca", "extendedKeyUsage=clientAuth");
        leaf("rogue", "edge-rogue", "rogue-ca", "extendedKeyUsage=clientAuth");
        for (const auto& l : more) leaf(l.name, l.cn, "ca", "extendedKeyUsage=clientAuth\n" + l.ext);
    }
    proto::TlsFiles server() const { return {at("server.crt"), at("server.key"), at("ca.crt")}; }
    proto::TlsFiles client() const { return {at("client.crt"), at("client.key"), at("ca.crt")}; }
    proto::TlsFiles leaf(const std::string& name) const { return {at(name + ".crt"), at(name + ".key"), at("ca.crt")}; }
};

// A rig's tune: data planes only on 127.0.0.1 over mutual TLS with `certs`,
// then `more`.
inline auto tls_only(const Certs& certs, std::function<void(consentd::DataPlaneConfig&)> more = {}) {
    return [&certs, more = std::move(more)](consentd::DataPlaneConfig& c) {
        c.socket.clear();
        c.tcp = consentd::DataPlaneTcp{"127.0.0.1", 0, certs.server()};
        if (more) more(c);
    };
}

inline proto::Endpoint tcp_endpoint(uint16_t port) {
    proto::Endpoint e;
    e.kind = proto::Endpoint::Kind::tcp;
    e.host = "127.0.0.1";
    e.port = port;
    return e;
}

}  // namespace optgate::test_proto
