#include "proto/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

namespace optgate::proto {

namespace ssl = boost::asio::ssl;

namespace {

std::string openssl_reason(const boost::system::error_code& ec) {
    std::string r = ec.message();
    if (const unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        r = buf;
    }
    ERR_clear_error();
    return r;
}

void load(ssl::context& ctx, const TlsFiles& f) {
    boost::system::error_code ec;
    if (f.certificate.empty() || f.private_key.empty() || f.ca.empty())
        throw std::runtime_error("TLS needs a certificate, a private key and a CA file");
    ctx.use_certificate_chain_file(f.certificate, ec);
    if (ec) throw std::runtime_error(f.certificate + ": cannot load the certificate: " + openssl_reason(ec));
    ctx.use_private_key_file(f.private_key, ssl::context::pem, ec);
    if (ec) throw std::runtime_error(f.private_key + ": cannot load the private key: " + openssl_reason(ec));
    if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
        ERR_clear_error();
        throw std::runtime_error(f.private_key + ": the private key does not match " + f.certificate);
    }
    ctx.load_verify_file(f.ca, ec);
    if (ec) throw std::runtime_error(f.ca + ": cannot load the CA certificates: " + openssl_reason(ec));
    if (SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION) != 1)
        throw std::runtime_error("cannot require TLS 1.2 or later");
}

}  // namespace

ssl::context make_server_tls(const TlsFiles& files) {
    ssl::context ctx(ssl::context::tls_server);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                    ssl::context::single_dh_use);
    load(ctx, files);
    // No certificate, or one the CA did not sign: the handshake fails.
    ctx.set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
    return ctx;
}

ssl::context make_client_tls(const TlsFiles& files) {
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3);
    load(ctx, files);
    ctx.set_verify_mode(ssl::verify_peer);
    return ctx;
}

}  // namespace optgate::proto
