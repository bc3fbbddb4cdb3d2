// Package blockcache keeps the contents of source files on node-local disk,
// in blocks, fetched the first time they are read.
//
// # Layout
//
// One sparse data file per source file, at the source file's full length,
// named by a hash of the file's identity (path, inode, size, mtime in ns),
// so a file changed at the source never maps onto bytes cached from its
// earlier version. Beside it, a presence log: a header (magic, block size,
// the source identity, and the identity of the data file it describes:
// inode and birth time) followed by one fixed-size record per block that
// is present, carrying the block's CRC-32C. Records are appended after the
// block's bytes are written, and each carries a checksum of itself, so a
// torn or garbage tail left by kill -9 is ignored on load, as is any
// record of a block past the end of the file; a block is never marked
// present before its bytes are in the data file. Nothing is fsynced.
//
// # Confinement
//
// The cache directory, blocks/ and each blocks/XX are opened as directory
// descriptors with O_NOFOLLOW and checked by fstat to be directories of
// the effective user that neither group nor others can write (else
// ErrUnsafeDir); blocks/XX are made with mkdirat 0700. Every file below is
// reached relative to those descriptors with O_NOFOLLOW: created with
// O_EXCL, and when it already exists, checked to be a regular file of the
// effective user with one link (else ErrUnsafeFile). Nothing is truncated
// or rewritten in place through a name: files that must start over are
// removed and made anew, and the lock file's owner line is written over
// its start. So no name another user plants redirects a write or receives
// cached bytes.
//
// # Integrity
//
//   - Every block is checked against its CRC-32C the first time each
//     process reads it back from the cache disk, whoever stored it and in
//     whatever boot; a per-block bit remembers the check for the life of
//     the process. A block that fails is not served, is counted in
//     Stats.Corrupt, and is fetched again. Damage done after a block's
//     first read by this process is not seen until the next process.
//   - A data file that is missing, not of the source's length, or not the
//     file its log names (deleted and made anew, or replaced by a copy)
//     starts over: its log and data are removed and what they held is
//     fetched again. A data file without a log is nothing cached.
//   - Descriptors handed out for splicing or passthrough are checked by
//     fstat to still hold the whole file (and a link) every time; a short
//     one starts the file over and the read takes the checked path.
//     Passthrough is offered only for files whose every block was checked
//     by this process: files up to 64 MiB are checked whole at open, larger
//     ones once read (or warmed) through the daemon.
//   - Eviction removes the log before the data file, so a kill at any
//     instruction leaves at worst a data file without a log.
//
// # Invariants
//
//   - Bytes served equal the source's bytes for the identity in Key: the
//     source file is opened and its identity checked before the first block
//     is fetched; on mismatch, missing blocks fail with ErrChanged (an EIO),
//     while blocks cached from the matching version stay valid.
//   - One source read per block however many readers wait: fetches go
//     through singleflight and run detached from the reader that started
//     them, so a reader interrupted by a signal cancels nobody else's wait.
//   - Total bytes stay under Options.MaxBytes: least recently used files are
//     evicted whole, never a file that is open; when nothing can be evicted,
//     new blocks are served without being stored, and then a miss reads
//     from the source only the bytes asked for, with no read-ahead.
//     Handle.Crowded tells whoever holds files open without readers to give
//     them back.
//   - The cache never fails a read that the source can serve: write errors
//     (ENOSPC, EIO of the cache disk) switch the cache to pass-through for a
//     while, logged once.
//   - One process per cache directory, enforced by flock; start-up reads no
//     per-file state: a file's presence log is loaded when it is first opened,
//     and usage is counted by a background scan.
//
// # Memory
//
// Per-file state of open files lives in a map; the states of files not open
// at the moment sit in a ristretto cache whose cost is their bitmap size, so
// re-opening a recently used file skips reloading its presence log while
// millions of cached files do not all sit in RAM. Idle states hold no file
// descriptors. The table's writes are buffered, so it may hand back a
// state older than one made since for the same file; a presence log longer
// than the state accounts for is reloaded.
//
// # Lock order
//
// Cache.mu, then fileState.mu. Nothing holds either across source I/O, nor
// fileState.mu across the cache-disk writes of a block and its record.
// Code holding fileState.mu takes Cache.mu (to degrade, or to forget the
// usage of removed files) only while it holds a reference to the state;
// the one path that takes Cache.mu then fileState.mu, deactivate, runs
// only when no reference is left.
package blockcache
