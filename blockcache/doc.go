// Package blockcache keeps the contents of source files on node-local disk,
// in blocks, fetched the first time they are read.
//
// # Layout
//
// One sparse data file per source file, named by a hash of the file's
// identity (path, inode, size, mtime in ns), so a file changed at the source
// never maps onto bytes cached from its earlier version. Beside it, a
// presence log: a header (magic, block size, identity, boot id) followed by
// one fixed-size record per block that is present, carrying the block's
// CRC-32C. Records are appended after the block's bytes are written, and
// each carries a checksum of itself, so a torn or garbage tail left by
// kill -9 is ignored on load; a block is never marked present before its
// bytes are in the data file. Nothing is fsynced, so after a crash of the
// machine (a new boot id) each recorded block is checked against its CRC
// before it is first served, and fetched again if it fails.
//
// # Invariants
//
//   - Bytes served equal the source's bytes for the identity in Key: the
//     source file is opened and its identity checked before the first block
//     is fetched; on mismatch, missing blocks fail with ErrChanged (an EIO),
//     while blocks cached from the matching version stay valid. After a
//     crash of the machine, records from the earlier boot are checked
//     before they are trusted, and before a file is offered for
//     passthrough.
//   - One source read per block however many readers wait: fetches go
//     through singleflight and run detached from the reader that started
//     them, so a reader interrupted by a signal cancels nobody else's wait.
//   - Total bytes stay under Options.MaxBytes: least recently used files are
//     evicted whole, never a file that is open; when nothing can be evicted,
//     new blocks are served without being stored.
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
// descriptors.
//
// # Lock order
//
// Cache.mu, then fileState.mu. Nothing holds either across source I/O, nor
// fileState.mu across the cache-disk writes of a block and its record.
package blockcache
