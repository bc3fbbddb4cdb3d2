// Package fusefs is the FUSE adapter of cachefs: the only package that imports
// go-fuse. It serves a snapshot.Snapshot as a read-only tree and hands file
// contents to a Content implementation.
//
// # Metadata
//
// The adapter implements go-fuse's raw protocol interface
// (fuse.RawFileSystem) over the snapshot, with no Go object per entry: a
// FUSE node id is a snapshot index plus one, so LOOKUP is a binary search
// among a directory's children, FORGET frees nothing, GETATTR, READDIR,
// READDIRPLUS and READLINK read the snapshot's columns, and directory
// listings keep no state (an offset is a position in the listing). Memory
// does not grow with the entries the kernel has looked up, and nothing of
// it is for the garbage collector to scan. None of these calls reaches the
// source. Because the snapshot never changes during a mount, every kernel
// cache is told to keep what it has for good: entry, attribute and negative
// timeouts are effectively infinite, directories are opened with
// FOPEN_CACHE_DIR (by the kernel itself: OPENDIR answers ENOSYS, so a
// listing costs no OPENDIR or RELEASEDIR round trip), files with
// FOPEN_KEEP_CACHE, and symlink targets are cached. st_ino is the source's inode number, so hard links show one
// st_ino, while the kernel's identity of a node is its snapshot entry, so
// no name reaches the node (or the contents) of another entry that shares
// its inode number.
//
// Extended attributes: the walk records POSIX ACLs only. A snapshot without
// any answers the first GETXATTR and LISTXATTR with ENOSYS, which the kernel
// remembers, so ls -l costs no round trip per file; one with ACLs is
// answered from memory and the kernel enforces them (EnableAcl).
//
// # Contents
//
// Content.Open touches no source: a process that opens and closes a file
// without reading it costs the source nothing. Who opens files is decided
// once per mount. By default (Mount.KernelOpens) the daemon answers OPEN and
// FLUSH with ENOSYS, so the kernel opens and closes files itself with no
// round trip and re-reads from the page cache never reach the daemon; reads
// that miss it come without a handle and go through one Reader per file that
// the mount holds while the file is being read (held.go). Otherwise every
// open returns a handle of its own, and a file complete at its first open is
// passed through to the kernel.
//
// # Writes
//
// The mount is read-only twice over: mounted with MS_RDONLY, so the kernel
// refuses writes itself, and every modifying operation also answers EROFS.
//
// # Errors
//
// Content and snapshot errors are Go errors; errno() is the one place that
// maps them to errnos, and the boundary logs once with op, path, offset and
// length.
package fusefs
