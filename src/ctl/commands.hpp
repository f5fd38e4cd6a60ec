// optgatectl subcommands. Each lives in its own file and is listed in
// main.cpp's table. A command returns the process exit status.
#pragma once

namespace optgate::ctl {

// check FILE [--consent C]: validate a policy and optionally a consent file
// against it (exit 0 valid, 1 invalid or unreadable, 2 usage; check.cpp).
int check(int argc, char** argv);

// consentd API clients (subscriber_commands.cpp; server and token from
// --server/--token/--token-file or OPTGATE_SERVER/OPTGATE_TOKEN; exit 0 on
// success, 1 on an error answer or no answer, 2 usage).
int grant(int argc, char** argv);
int revoke(int argc, char** argv);
int bind(int argc, char** argv);
int unbind(int argc, char** argv);
int import_file(int argc, char** argv);
int reload(int argc, char** argv);
// show SUB [--history N] [--utc] [--json]: a subscriber's consents (since
// when), addresses and history; binding ADDRESS [--at T] [--utc] [--json]:
// who held an address then (show.cpp; tables in local time).
int show(int argc, char** argv);
int binding(int argc, char** argv);
// dataplanes [--json]: data planes connected to consentd (dataplanes.cpp).
int dataplanes(int argc, char** argv);
// disclosures SUB [--from D] [--to D] [--json]: what was shared about a
// subscriber, per day, collector and identifier (disclosures.cpp).
int disclosures(int argc, char** argv);
// verify-ledger DB [--receipt FILE]: offline ledger (or receipt) check
// (verify_ledger.cpp; exit 0 ok, 1 not).
int verify_ledger(int argc, char** argv);
// optgatectl copy-ledger FROM TO: a ledger into another store, verified on
// arrival (copy_ledger.cpp; exit 0 ok, 1 not).
int copy_ledger(int argc, char** argv);
// receipt SUB SEQ [--json]: a consent event's receipt (receipt.cpp).
int receipt(int argc, char** argv);

}  // namespace optgate::ctl
