// One data plane connection on consentd's side (docs/protocol.md): reads and
// strictly decodes what the data plane sends (hello, ack, goodbye), hands it
// to the Publisher, and writes what the publisher queues.
//
//  - the write queue is bounded (max_queue_bytes of stream frames; snapshot
//    frames are shared and do not count): past it, every frame not yet being
//    written is dropped and the publisher resends the table;
//  - a write that makes no progress for write_timeout closes the connection,
//    as does a missing hello after hello_timeout (TLS handshake included)
//    or a TLS handshake not done within handshake_timeout;
//  - before hello a connection holds no data-plane slot and a read buffer
//    the size of a hello: any other frame first, or a header announcing a
//    larger one, closes it. At hello the name must be the client
//    certificate's CN or one of its DNS names (TLS), and a name connected
//    already is taken over only by the same identity (Publisher::
//    admissible()). Refusals before hello are counted and logged by the
//    DataPlaneAdmission (rate-limited);
//  - a malformed, oversized or unexpected frame is logged and closes the
//    connection (after a goodbye saying why); nothing the peer sends can
//    crash consentd or make it allocate more than one read buffer (16 KiB,
//    growing to the largest frame a data plane may send, a disclosure
//    report of at most 1 MiB, while one is read);
//  - stats reports replace the data plane's last one at the publisher;
//  - disclosure reports go to the publisher's DisclosureSink with the
//    hello name; the disclosure-ack goes only after the sink's done(true),
//    posted back to the io thread (a session gone by then is skipped). At
//    most kMaxDisclosuresInFlight reports per connection are with the sink;
//    more are dropped unacknowledged (the data plane sends them again), as
//    is a repeat of one being stored. Without a sink, the first report is
//    answered goodbye (unsupported): nothing is acknowledged that was not
//    stored, and the data plane keeps its reports.
// All on the io thread.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>

#include "consentd/dataplane_admission.hpp"
#include "consentd/publisher.hpp"

namespace optgate::consentd {

// `ticket`: the TCP connection's pending place, released at hello or close.
void start_session(boost::asio::local::stream_protocol::socket socket, Publisher& publisher,
                   std::shared_ptr<DataPlaneAdmission> admission);
void start_session(boost::asio::ip::tcp::socket socket, Publisher& publisher,
                   std::shared_ptr<DataPlaneAdmission> admission, std::unique_ptr<DataPlaneAdmission::Ticket> ticket);
// Mutual TLS: the handshake fails without a client certificate the CA signed.
void start_session(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& tls, Publisher& publisher,
                   std::shared_ptr<DataPlaneAdmission> admission, std::unique_ptr<DataPlaneAdmission::Ticket> ticket);

}  // namespace optgate::consentd
