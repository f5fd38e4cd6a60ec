// optgatectl verify-ledger DB [--receipt FILE] [--checkpoints FILE
// [--public-key FILE]]: offline check of a consentd ledger file (the schema,
// the hash chain, the derived tables, the policy history); exit 0 and one
// line when consistent, exit 1 and the first inconsistency otherwise. With
// --receipt: a consent receipt checked against the ledger instead
// (docs/receipts.md): exit 0 when every field is what the ledger says, 1
// naming the first field that is not. With --checkpoints: also every signed
// checkpoint of the file against the ledger (docs/consentd.md, "Signed
// checkpoints"): a ledger shorter than a checkpoint, or differing at one.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "consentd/checkpoint.hpp"
#include "consentd/database.hpp"
#include "consentd/verify.hpp"
#include "ctl/commands.hpp"

namespace optgate::ctl {

namespace {

int check_receipt(const char* db, const char* file) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) {
        std::fprintf(stderr, "%s: cannot read it\n", file);
        return 1;
    }
    const auto c = consentd::verify_receipt(db, text.str());
    if (!c.ok) {
        std::fprintf(stderr, "%s: DOES NOT MATCH %s: %s\n", file, db, c.problem.c_str());
        return 1;
    }
    std::printf("%s: ok: receipt %s is event %llu of %s, chain verified from event 1\n", file, c.receipt_id.c_str(),
                static_cast<unsigned long long>(c.seq), db);
    return 0;
}

int check_checkpoints(const char* db, const char* file, const char* public_key) {
    std::optional<consentd::CheckpointKey> pinned;
    if (public_key) {
        try {
            pinned = consentd::CheckpointKey::load_public(public_key);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "%s\n", e.what());
            return 1;
        }
    }
    const auto r = consentd::verify_checkpoints(db, file, pinned);
    if (!r.ok) {
        std::fprintf(stderr, "%s: CHECKPOINT FAILED: %s\n", db, r.problem.c_str());
        return 1;
    }
    std::string keys;
    for (const auto& k : r.key_ids) keys += (keys.empty() ? "" : ", ") + k;
    if (!r.latest) {
        std::printf("%s: ok: %s holds no checkpoint yet\n", db, file);
        return 0;
    }
    std::printf("%s: ok: %llu checkpoints of %s verified (%s key %s), the latest of event %llu signed at %s\n", db,
                static_cast<unsigned long long>(r.checkpoints), file, pinned ? "pinned" : "in-file",
                pinned ? pinned->id().c_str() : keys.c_str(), static_cast<unsigned long long>(r.latest->seq),
                r.latest->time.c_str());
    return 0;
}

}  // namespace

int verify_ledger(int argc, char** argv) {
    const char* db = nullptr;
    const char* receipt = nullptr;
    const char* checkpoints = nullptr;
    const char* public_key = nullptr;
    bool usage = false, help = false;
    for (int i = 1; i < argc; ++i) {
        if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help"))
            help = true;
        else if (!std::strcmp(argv[i], "--receipt") && i + 1 < argc && !receipt)
            receipt = argv[++i];
        else if (!std::strcmp(argv[i], "--checkpoints") && i + 1 < argc && !checkpoints)
            checkpoints = argv[++i];
        else if (!std::strcmp(argv[i], "--public-key") && i + 1 < argc && !public_key)
            public_key = argv[++i];
        else if (argv[i][0] != '-' && !db)
            db = argv[i];
        else
            usage = true;
    }
    if (help || usage || !db || (public_key && !checkpoints) || (receipt && checkpoints)) {
        std::fprintf(help ? stdout : stderr,
                     "usage: optgatectl verify-ledger DB [--receipt FILE]\n"
                     "       optgatectl verify-ledger DB --checkpoints FILE [--public-key FILE]\n");
        return help ? 0 : 2;
    }
    if (receipt) return check_receipt(db, receipt);
    const auto r = consentd::verify_ledger(db);
    const std::string name = consentd::printable_locator(db);  // a PostgreSQL password is not printed
    if (!r.ok) {
        std::fprintf(stderr, "%s: INCONSISTENT: %s\n", name.c_str(), r.problem.c_str());
        // The checkpoints still say whether events were removed or rewritten.
        if (checkpoints) check_checkpoints(db, checkpoints, public_key);
        return 1;
    }
    std::printf("%s: ok: %llu events, head %s, %llu consents, %llu bindings, %llu subscribers, %llu policies\n",
                name.c_str(), static_cast<unsigned long long>(r.events), r.head_hash.c_str(),
                static_cast<unsigned long long>(r.consents), static_cast<unsigned long long>(r.bindings),
                static_cast<unsigned long long>(r.subscribers), static_cast<unsigned long long>(r.policies));
    return checkpoints ? check_checkpoints(db, checkpoints, public_key) : 0;
}

}  // namespace optgate::ctl
