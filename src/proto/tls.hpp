// Mutual TLS for the data-plane protocol over TCP (Boost.Asio ssl over
// OpenSSL). Both sides present a certificate and verify the other's against
// a private CA: consentd refuses a data plane without a valid client
// certificate, and a data plane refuses a consentd its CA did not sign (and,
// for a TCP endpoint, whose certificate does not name the host it dialled).
// TLS 1.2 is the oldest version accepted.
#pragma once

#include <string>

#include <boost/asio/ssl/context.hpp>

namespace optgate::proto {

struct TlsFiles {
    std::string certificate;  // PEM: this side's certificate (chain)
    std::string private_key;  // PEM: its key
    std::string ca;           // PEM: the CA(s) that sign the other side
};

// Both throw std::runtime_error naming the file and OpenSSL's reason when a
// file is missing, unreadable, or the key does not match the certificate.
boost::asio::ssl::context make_server_tls(const TlsFiles& files);
boost::asio::ssl::context make_client_tls(const TlsFiles& files);

}  // namespace optgate::proto
