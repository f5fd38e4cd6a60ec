#include "consentd/wal_write_buffer.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>

#include "consentd/database.hpp"

namespace optgate::consentd {

namespace {

constexpr int kCapacity = 1 << 20;  // a commit of up to ~250 pages in one write
constexpr int kFrameHeader = 24;    // SQLite's WAL frame header (fileformat2.html)
// The unix VFS writes at most 128 KiB - 1 bytes per xWrite (its
// seekAndWriteFd masks the length with 0x1ffff, and a longer write comes back
// short, as SQLITE_FULL): so a flush is one write per 124 KiB, 30 pages.
constexpr int kMaxWrite = 124 * 1024;

struct Counters {
    std::atomic<uint64_t> writes_asked{0}, writes_made{0}, bytes_asked{0}, bytes_made{0};
};
Counters& counters() {
    static Counters c;
    return c;
}

// Our part of each open file; SQLite allocates it (szOsFile) and the real
// VFS's file follows it.
struct File {
    sqlite3_file base;
    sqlite3_file* real;
    File* wal;  // a database: the WAL its connection has open, if any
    File* db;   // a WAL: its database
    bool is_wal;
    bool commit_pending;  // the last write was the header of a commit frame
    char* buffer;
    sqlite3_int64 offset;  // of buffer[0] in the file
    int length;            // bytes gathered
};

constexpr size_t kFileSize = (sizeof(File) + 15) & ~size_t(15);

sqlite3_vfs* real_vfs(sqlite3_vfs* vfs) { return static_cast<sqlite3_vfs*>(vfs->pAppData); }
File* file(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
const sqlite3_io_methods* real_methods(File* f) { return f->real->pMethods; }

// Writes `n` bytes at `off` through the real file, in calls of at most
// kMaxWrite bytes.
int write_through(File* f, const char* p, int n, sqlite3_int64 off) {
    for (int done = 0; done < n;) {
        const int part = std::min(n - done, kMaxWrite);
        counters().writes_made.fetch_add(1, std::memory_order_relaxed);
        counters().bytes_made.fetch_add(uint64_t(part), std::memory_order_relaxed);
        if (const int rc = real_methods(f)->xWrite(f->real, p + done, part, off + done); rc != SQLITE_OK) return rc;
        done += part;
    }
    return SQLITE_OK;
}

int flush(File* f) {
    if (f->length == 0) return SQLITE_OK;
    const int rc = write_through(f, f->buffer, f->length, f->offset);
    f->length = 0;
    return rc;
}

// Before the shared WAL index changes (a lock, a map, a barrier between the
// two copies of its header), every frame gathered must be in the file.
int flush_wal_of(File* db) { return db->wal ? flush(db->wal) : SQLITE_OK; }

int x_close(sqlite3_file* sf) {
    File* f = file(sf);
    int rc = SQLITE_OK;
    if (f->is_wal) {
        rc = flush(f);
        if (f->db) f->db->wal = nullptr;
        delete[] f->buffer;
        f->buffer = nullptr;
    } else if (f->wal) {
        f->wal->db = nullptr;
    }
    const int closed = real_methods(f)->xClose(f->real);
    return rc != SQLITE_OK ? rc : closed;
}

uint32_t big_endian32(const void* p) {
    const auto* b = static_cast<const unsigned char*>(p);
    return uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | uint32_t(b[3]);
}

int x_write(sqlite3_file* sf, const void* p, int n, sqlite3_int64 off) {
    File* f = file(sf);
    if (!f->is_wal) return real_methods(f)->xWrite(f->real, p, n, off);
    counters().writes_asked.fetch_add(1, std::memory_order_relaxed);
    counters().bytes_asked.fetch_add(uint64_t(n), std::memory_order_relaxed);
    if (f->length > 0 && off == f->offset + f->length && f->length + n <= kCapacity) {
        std::memcpy(f->buffer + f->length, p, size_t(n));
        f->length += n;
    } else {
        if (const int rc = flush(f); rc != SQLITE_OK) return rc;
        if (!f->buffer) f->buffer = new (std::nothrow) char[kCapacity];
        if (n > kCapacity || !f->buffer) return write_through(f, static_cast<const char*>(p), n, off);
        std::memcpy(f->buffer, p, size_t(n));
        f->offset = off;
        f->length = n;
    }
    // The commit frame's page is the transaction's last frame: write them
    // all now, and let the COMMIT fail if the write does.
    if (f->commit_pending) {
        f->commit_pending = false;
        return flush(f);
    }
    f->commit_pending = n == kFrameHeader && big_endian32(static_cast<const char*>(p) + 4) != 0;
    return SQLITE_OK;
}

// A method of the real file, called once this file's gathered WAL bytes are
// written (nothing to write for any other file).
template <auto Method, typename... Args>
int after_flush(sqlite3_file* sf, Args... args) {
    File* f = file(sf);
    if (const int rc = flush(f); rc != SQLITE_OK) return rc;
    return (real_methods(f)->*Method)(f->real, args...);
}

int x_check_reserved_lock(sqlite3_file* sf, int* out) {
    File* f = file(sf);
    return real_methods(f)->xCheckReservedLock(f->real, out);
}

int x_sector_size(sqlite3_file* sf) {
    File* f = file(sf);
    return real_methods(f)->xSectorSize(f->real);
}

int x_device_characteristics(sqlite3_file* sf) {
    File* f = file(sf);
    return real_methods(f)->xDeviceCharacteristics(f->real);
}

int x_shm_map(sqlite3_file* sf, int region, int size, int extend, void volatile** p) {
    File* f = file(sf);
    if (const int rc = flush_wal_of(f); rc != SQLITE_OK) return rc;
    return real_methods(f)->xShmMap(f->real, region, size, extend, p);
}

int x_shm_lock(sqlite3_file* sf, int offset, int n, int flags) {
    File* f = file(sf);
    if (const int rc = flush_wal_of(f); rc != SQLITE_OK) return rc;
    return real_methods(f)->xShmLock(f->real, offset, n, flags);
}

void x_shm_barrier(sqlite3_file* sf) {
    File* f = file(sf);
    // Normally empty here: the commit frame flushed everything. Frames that
    // are not in the file must never become visible through the index
    // header written after this barrier, and a barrier cannot fail: so if
    // this last-resort write fails, stop (fail-stop; WAL recovery at the
    // next start drops the unwritten transaction, which nobody was told of).
    if (flush_wal_of(f) != SQLITE_OK) {
        std::fputs("consentd: writing the WAL failed before its index could be updated; stopping\n", stderr);
        std::abort();
    }
    real_methods(f)->xShmBarrier(f->real);
}

int x_shm_unmap(sqlite3_file* sf, int delete_flag) {
    File* f = file(sf);
    if (const int rc = flush_wal_of(f); rc != SQLITE_OK) return rc;
    return real_methods(f)->xShmUnmap(f->real, delete_flag);
}

int x_unfetch(sqlite3_file* sf, sqlite3_int64 off, void* p) {
    File* f = file(sf);
    return real_methods(f)->xUnfetch(f->real, off, p);
}

using M = sqlite3_io_methods;
const sqlite3_io_methods kMethods = {
    3,
    x_close,
    after_flush<&M::xRead, void*, int, sqlite3_int64>,
    x_write,
    after_flush<&M::xTruncate, sqlite3_int64>,
    after_flush<&M::xSync, int>,
    after_flush<&M::xFileSize, sqlite3_int64*>,
    after_flush<&M::xLock, int>,
    after_flush<&M::xUnlock, int>,
    x_check_reserved_lock,
    after_flush<&M::xFileControl, int, void*>,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    after_flush<&M::xFetch, sqlite3_int64, int, void**>,
    x_unfetch,
};

int x_open(sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* sf, int flags, int* out_flags) {
    sqlite3_vfs* real = real_vfs(vfs);
    File* f = file(sf);
    std::memset(f, 0, sizeof(File));
    f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(sf) + kFileSize);
    const int rc = real->xOpen(real, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods) {
        f->base.pMethods = nullptr;  // SQLite then does not close it
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    // Our methods are version 3; the default VFS's (unix) are too. A real
    // file without shm or mmap (another VFS) would need fewer.
    if (f->real->pMethods->iVersion < 3) {
        f->real->pMethods->xClose(f->real);
        f->base.pMethods = nullptr;
        return SQLITE_CANTOPEN;
    }
    f->base.pMethods = &kMethods;
    if ((flags & SQLITE_OPEN_WAL) && name) {
        sqlite3_file* db = sqlite3_database_file_object(name);
        f->is_wal = true;
        if (db && db->pMethods == &kMethods) {
            f->db = file(db);
            f->db->wal = f;
        }
    }
    return SQLITE_OK;
}

int x_delete(sqlite3_vfs* v, const char* name, int sync_dir) {
    return real_vfs(v)->xDelete(real_vfs(v), name, sync_dir);
}
int x_access(sqlite3_vfs* v, const char* name, int flags, int* out) {
    return real_vfs(v)->xAccess(real_vfs(v), name, flags, out);
}
int x_full_pathname(sqlite3_vfs* v, const char* name, int n, char* out) {
    return real_vfs(v)->xFullPathname(real_vfs(v), name, n, out);
}
void* x_dl_open(sqlite3_vfs* v, const char* name) { return real_vfs(v)->xDlOpen(real_vfs(v), name); }
void x_dl_error(sqlite3_vfs* v, int n, char* out) { real_vfs(v)->xDlError(real_vfs(v), n, out); }
void (*x_dl_sym(sqlite3_vfs* v, void* h, const char* sym))() { return real_vfs(v)->xDlSym(real_vfs(v), h, sym); }
void x_dl_close(sqlite3_vfs* v, void* h) { real_vfs(v)->xDlClose(real_vfs(v), h); }
int x_randomness(sqlite3_vfs* v, int n, char* out) { return real_vfs(v)->xRandomness(real_vfs(v), n, out); }
int x_sleep(sqlite3_vfs* v, int us) { return real_vfs(v)->xSleep(real_vfs(v), us); }
int x_current_time(sqlite3_vfs* v, double* t) { return real_vfs(v)->xCurrentTime(real_vfs(v), t); }
int x_get_last_error(sqlite3_vfs* v, int n, char* out) { return real_vfs(v)->xGetLastError(real_vfs(v), n, out); }
int x_current_time_int64(sqlite3_vfs* v, sqlite3_int64* t) { return real_vfs(v)->xCurrentTimeInt64(real_vfs(v), t); }

constexpr const char* kName = "optgate-wal-write-buffer";

}  // namespace

const char* wal_write_buffer_vfs() {
    static std::once_flag once;
    static sqlite3_vfs vfs;
    std::call_once(once, [] {
        configure_sqlite();  // before sqlite3_vfs_find initializes the library
        sqlite3_vfs* real = sqlite3_vfs_find(nullptr);
        vfs.iVersion = 2;  // up to xCurrentTimeInt64: the system-call overrides are the real VFS's business
        vfs.szOsFile = int(kFileSize) + real->szOsFile;
        vfs.mxPathname = real->mxPathname;
        vfs.zName = kName;
        vfs.pAppData = real;
        vfs.xOpen = x_open;
        vfs.xDelete = x_delete;
        vfs.xAccess = x_access;
        vfs.xFullPathname = x_full_pathname;
        vfs.xDlOpen = x_dl_open;
        vfs.xDlError = x_dl_error;
        vfs.xDlSym = x_dl_sym;
        vfs.xDlClose = x_dl_close;
        vfs.xRandomness = x_randomness;
        vfs.xSleep = x_sleep;
        vfs.xCurrentTime = x_current_time;
        vfs.xGetLastError = x_get_last_error;
        vfs.xCurrentTimeInt64 = x_current_time_int64;
        if (sqlite3_vfs_register(&vfs, 0) != SQLITE_OK) vfs.zName = nullptr;
    });
    return vfs.zName;
}

WalWriteBufferStats wal_write_buffer_stats() {
    const Counters& c = counters();
    return {c.writes_asked.load(std::memory_order_relaxed), c.writes_made.load(std::memory_order_relaxed),
            c.bytes_asked.load(std::memory_order_relaxed), c.bytes_made.load(std::memory_order_relaxed)};
}

}  // namespace optgate::consentd
