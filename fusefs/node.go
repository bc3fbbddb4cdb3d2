package fusefs

import (
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// rawFS answers the kernel's requests straight from the snapshot. A node id
// is a snapshot index plus one (the root, index 0, is FUSE_ROOT_ID), so a
// looked-up entry costs the daemon nothing: no object per entry, nothing
// to free on FORGET, and nothing the garbage collector scans.
//
// Requests it does not implement get the embedded default's ENOSYS, which
// the kernel takes for "not supported, never ask again" (ACCESS, STATX,
// LSEEK, FSYNC, locks).
type rawFS struct {
	fuse.RawFileSystem
	snap    *snapshot.Snapshot
	content Content
	m       *Mount
	// xattrs is false when the snapshot holds no extended attribute for
	// any entry: GETXATTR and LISTXATTR then answer ENOSYS once and the
	// kernel stops sending them, so ls -l costs no round trip per file.
	xattrs bool
	// srv is set before the first request is served.
	srv *fuse.Server
	// io holds each file's passthrough decision (see ioModes).
	io    ioModes
	files fileTable
}

var _ fuse.RawFileSystem = (*rawFS)(nil)

func newRawFS(snap *snapshot.Snapshot, content Content, m *Mount) *rawFS {
	t := &rawFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), snap: snap, content: content, m: m,
		xattrs: snap.HasACLs(), files: fileTable{open: map[uint64]*openFile{}, backing: map[uint32]*backing{}}}
	if m.passthrough {
		t.io = make(ioModes, (snap.Len()+15)/16)
	}
	return t
}

func (t *rawFS) String() string { return "cachefs" }

// entry turns a node id back into a snapshot index.
func (t *rawFS) entry(nodeid uint64) (uint32, bool) {
	if nodeid == 0 || nodeid > uint64(t.snap.Len()) {
		return 0, false
	}
	return uint32(nodeid - 1), true
}

// errStale answers a node id that no entry has; the kernel only sends ids
// it was given, so this is a bug or a forged request.
const errStale = fuse.Status(syscall.ESTALE)

// fillEntry describes entry idx to the kernel for good: the snapshot never
// changes during a mount.
func (t *rawFS) fillEntry(out *fuse.EntryOut, idx uint32) {
	out.NodeId = uint64(idx) + 1
	out.Generation = 1
	fillAttr(&out.Attr, t.snap.Attr(idx))
	out.SetEntryTimeout(forever)
	out.SetAttrTimeout(forever)
	if l := t.m.onLookup; l != nil && t.snap.Attr(idx).IsRegular() {
		l(idx)
	}
}

// Lookup is a binary search among the directory's children. A name that is
// not there is a negative entry the kernel keeps as long as the mount.
func (t *rawFS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	dir, ok := t.entry(h.NodeId)
	if !ok {
		return errStale
	}
	var c uint32
	switch name {
	case ".":
		c, ok = dir, true
	case "..":
		c, ok = t.snap.Parent(dir), true
	default:
		c, ok = t.snap.Lookup(dir, name)
	}
	if !ok {
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(forever)
		return fuse.OK
	}
	t.fillEntry(out, c)
	return fuse.OK
}

// Forget has nothing to free: node ids are snapshot indexes. The kernel
// dropped the inode and its pages, which OnForget hears.
func (t *rawFS) Forget(nodeid, nlookup uint64) {
	if f := t.m.onForget; f != nil {
		if idx, ok := t.entry(nodeid); ok {
			f(idx)
		}
	}
}

func (t *rawFS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	idx, ok := t.entry(in.NodeId)
	if !ok {
		return errStale
	}
	fillAttr(&out.Attr, t.snap.Attr(idx))
	out.SetTimeout(forever)
	return fuse.OK
}

func (t *rawFS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	idx, ok := t.entry(h.NodeId)
	if !ok {
		return nil, errStale
	}
	if t.snap.Mode(idx)&snapshot.ModeType != snapshot.ModeLink {
		return nil, fuse.EINVAL
	}
	return []byte(t.snap.Target(idx)), fuse.OK
}

// StatFs describes the snapshot, not the source: asking the source would be
// a metadata call, and a read-only view has no free space to offer anyway.
func (t *rawFS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	st := t.snap.Stats()
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(st.Bytes+4095) / 4096
	out.Files = uint64(st.Entries)
	out.NameLen = snapshot.MaxNameLen
	return fuse.OK
}

// fillAttr copies snapshot attributes into the kernel's form.
func fillAttr(out *fuse.Attr, a snapshot.Attr) {
	out.Ino = a.Ino
	out.Size = uint64(a.Size)
	out.Blocks = (uint64(a.Size) + 511) / 512
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.Uid, Gid: a.Gid}
	out.Atime, out.Atimensec = splitNs(a.Atime)
	out.Mtime, out.Mtimensec = splitNs(a.Mtime)
	out.Ctime, out.Ctimensec = splitNs(a.Ctime)
	// Applications size their I/O buffers by st_blksize; 128 KiB matches the
	// kernel's default FUSE read size.
	out.Blksize = 128 << 10
	if a.Mode&snapshot.ModeType == snapshot.ModeDir {
		out.Blksize = dirBlksize
	}
	out.Rdev = 0
	if a.Rdev != 0 {
		// The kernel decodes FUSE's rdev with new_decode_dev, a 32-bit
		// encoding unlike glibc's 64-bit st_rdev.
		maj, mnr := unix.Major(a.Rdev), unix.Minor(a.Rdev)
		out.Rdev = (mnr & 0xff) | (maj << 8) | ((mnr &^ 0xff) << 12)
	}
}

// dirBlksize is a directory's st_blksize. glibc's opendir sizes its
// getdents buffer by it (32 KiB to 1 MiB), and the kernel asks READDIRPLUS
// for as many bytes as getdents was given (up to the mount's request size),
// so it sets how many entries one round trip carries: about 160 bytes each.
const dirBlksize = 256 << 10

// splitNs splits ns since the epoch into seconds and nanoseconds, flooring so
// that times before 1970 keep a nanosecond part in [0, 1e9).
func splitNs(ns int64) (uint64, uint32) {
	sec, nsec := ns/1e9, ns%1e9
	if nsec < 0 {
		sec--
		nsec += 1e9
	}
	return uint64(sec), uint32(nsec)
}

// name returns entry i's name without copying it: the arena never changes
// and the caller copies the bytes into the reply.
func (t *rawFS) name(i uint32) string {
	b := t.snap.NameBytes(i)
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// ioModes packs a 2-bit passthrough decision per entry (see
// fileTable.passthrough): a quarter of a byte per entry, allocated only
// when passthrough is on.
type ioModes []atomic.Uint32

const (
	ioUndecided uint32 = iota
	ioPassthrough
	ioPlain
)

func (m ioModes) load(idx uint32) uint32 {
	return m[idx/16].Load() >> (2 * (idx % 16)) & 3
}

// decide sets idx's mode if it is still undecided and returns the mode
// that holds.
func (m ioModes) decide(idx uint32, mode uint32) uint32 {
	w, shift := &m[idx/16], 2*(idx%16)
	for {
		old := w.Load()
		if cur := old >> shift & 3; cur != ioUndecided {
			return cur
		}
		if w.CompareAndSwap(old, old|mode<<shift) {
			return mode
		}
	}
}

// demote turns idx from passthrough to plain for the rest of the mount.
func (m ioModes) demote(idx uint32) {
	w, shift := &m[idx/16], 2*(idx%16)
	for {
		old := w.Load()
		if w.CompareAndSwap(old, old&^(3<<shift)|ioPlain<<shift) {
			return
		}
	}
}
