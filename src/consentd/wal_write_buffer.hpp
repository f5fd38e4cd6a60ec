// A SQLite VFS that writes a commit's WAL frames with one system call
// (docs/consentd.md, "Durability and the write path").
//
// SQLite writes each WAL frame as two write() calls (its 24-byte header, then
// the page): about nine frames, eighteen calls, per RADIUS binding, and on a
// paravirtualised host every system call is an exit to the hypervisor. This
// VFS sits over the default one and, for WAL files only, gathers contiguous
// writes in memory and issues them as one write when:
//   - the commit frame's page has been written (a frame header whose
//     "database size after commit" field is not zero marks it): the write of
//     that page returns the write's result, so a full disk or an I/O error
//     fails the COMMIT exactly as it did without the buffer;
//   - a write is not contiguous with the gathered bytes, or would overflow
//     the buffer (1 MiB): the earlier bytes go first, in order;
//   - before anything else touches the file or the shared WAL index: a read,
//     sync, truncate, size, lock or file control on the WAL, and any shm
//     lock, map or barrier on its database. So no other connection can see a
//     frame (through the WAL index header) that is not in the file yet.
// Every other file (the database, journals) passes straight through. Only
// consentd's ledger writer opens its connection with this VFS; readers and
// the checkpointer use the default one and see the same file.
//
// Nothing acknowledged depends on it: consentd answers a change only after
// fdatasync of the WAL (ledger.hpp), which comes after COMMIT has returned,
// so after the frames were written.
#pragma once

#include <cstdint>

namespace optgate::consentd {

// Registers the VFS (once, thread-safe; not as the default) and returns its
// name, for sqlite3_open_v2.
const char* wal_write_buffer_vfs();

// Process-wide counts, for tests and benchmarks: the writes SQLite asked of
// WAL files through this VFS and their bytes, and the writes this VFS made
// for them and theirs.
struct WalWriteBufferStats {
    uint64_t writes_asked = 0, writes_made = 0;
    uint64_t bytes_asked = 0, bytes_made = 0;
};
WalWriteBufferStats wal_write_buffer_stats();

}  // namespace optgate::consentd
