package fs

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cachefs/cachefs/snapshot"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// tree is what every node of one mount shares.
type tree struct {
	snap    *snapshot.Snapshot
	content Content
	m       *Mount
}

// node is one snapshot entry as go-fuse sees it. It holds no metadata of its
// own: everything is read from the snapshot on demand, so a node costs the
// go-fuse Inode plus two words.
type node struct {
	gofs.Inode
	t   *tree
	idx uint32
	// ioMode is decided at the first open of the inode in this mount and
	// kept: the kernel fails an open with EIO when it would mix passthrough
	// and ordinary opens of one inode, and it drops an ordinary open's
	// claim only some time after close, so counting open handles in the
	// daemon races with it. A file complete at its first open is read in
	// passthrough from then on; one that is not stays on the page cache and
	// splice path for the rest of the mount.
	ioMode atomic.Int32
}

const (
	ioUndecided int32 = iota
	ioPassthrough
	ioPlain
)

var (
	_ gofs.NodeLookuper       = (*node)(nil)
	_ gofs.NodeGetattrer      = (*node)(nil)
	_ gofs.NodeOpendirHandler = (*node)(nil)
	_ gofs.NodeReadlinker     = (*node)(nil)
	_ gofs.NodeStatfser       = (*node)(nil)
	_ gofs.NodeGetxattrer     = (*node)(nil)
	_ gofs.NodeListxattrer    = (*node)(nil)
	_ gofs.NodeOpener         = (*node)(nil)
)

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
	if a.Rdev != 0 {
		// The kernel decodes FUSE's rdev with new_decode_dev, a 32-bit
		// encoding unlike glibc's 64-bit st_rdev.
		maj, mnr := unix.Major(a.Rdev), unix.Minor(a.Rdev)
		out.Rdev = (mnr & 0xff) | (maj << 8) | ((mnr &^ 0xff) << 12)
	}
}

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

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	c, ok := n.t.snap.Lookup(n.idx, name)
	if !ok {
		return nil, syscall.ENOENT
	}
	a := n.t.snap.Attr(c)
	fillAttr(&out.Attr, a)
	child := &node{t: n.t, idx: c}
	return n.NewInode(ctx, child, stableAttr(c, a)), 0
}

// stableAttr is the go-fuse identity of entry idx. go-fuse hands back an
// already registered node for an identity it knows, so the identity must
// follow the snapshot entry: keyed by inode number alone, a second name for
// one inode number (a hard link, or a crafted index) would reach the node
// of the first, and serve its path. Gen carries the entry index, which is
// never 0 below the root (the root's Gen is 0), so no two entries share an
// identity; Ino stays the snapshot's inode number, because go-fuse reports
// StableAttr.Ino as st_ino and hard links should keep showing one number.
// The kernel keys its inodes by go-fuse's node ids, which are allocated per
// node, so a shared st_ino folds nothing there either.
func stableAttr(idx uint32, a snapshot.Attr) gofs.StableAttr {
	ino := a.Ino
	if ino == ^uint64(0) {
		// Reserved by go-fuse, which panics on it; 0 asks it for a number.
		ino = 0
	}
	return gofs.StableAttr{Mode: a.Mode & snapshot.ModeType, Ino: ino, Gen: uint64(idx)}
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fillAttr(&out.Attr, n.t.snap.Attr(n.idx))
	return 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	if n.t.snap.Mode(n.idx)&snapshot.ModeType != snapshot.ModeLink {
		return nil, syscall.EINVAL
	}
	return []byte(n.t.snap.Target(n.idx)), 0
}

// Statfs describes the snapshot, not the source: asking the source would be
// a metadata call, and a read-only view has no free space to offer anyway.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	st := n.t.snap.Stats()
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = uint64(st.Bytes+4095) / 4096
	out.Files = uint64(st.Entries)
	out.NameLen = snapshot.MaxNameLen
	return 0
}

// Getxattr answers from the snapshot: the walk records POSIX ACLs and no
// other attribute (each would be one more round trip per entry), so
// everything else is "none", from memory, and ls -l and friends never reach
// the source. The kernel asks for an inode's ACL once and caches it.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	acl := n.t.snap.ACL(n.idx)
	var v []byte
	switch attr {
	case snapshot.XattrACLAccess:
		v = acl.Access
	case snapshot.XattrACLDefault:
		v = acl.Default
	}
	if v == nil {
		return 0, syscall.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr names the ACLs the entry has, NUL-terminated as listxattr(2)
// returns them.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	acl := n.t.snap.ACL(n.idx)
	var list []byte
	if acl.Access != nil {
		list = append(append(list, snapshot.XattrACLAccess...), 0)
	}
	if acl.Default != nil {
		list = append(append(list, snapshot.XattrACLDefault...), 0)
	}
	if len(dest) < len(list) {
		return uint32(len(list)), syscall.ERANGE
	}
	return uint32(copy(dest, list)), 0
}

func (n *node) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if !snapshot.Attr.IsDir(n.t.snap.Attr(n.idx)) {
		return nil, 0, syscall.ENOTDIR
	}
	if l := n.t.m.onList; l != nil {
		l(n.idx)
	}
	return &dirHandle{t: n.t, idx: n.idx}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle streams a directory's children from the snapshot, after "." and
// ".." as a local filesystem lists them. Offsets are stream positions plus
// one (0 means the start), so seeks are exact.
type dirHandle struct {
	t   *tree
	idx uint32
	mu  sync.Mutex
	pos uint32
}

var (
	_ gofs.FileReaddirenter = (*dirHandle)(nil)
	_ gofs.FileSeekdirer    = (*dirHandle)(nil)
)

func (d *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.t.snap
	var e fuse.DirEntry
	switch d.pos {
	case 0:
		e = fuse.DirEntry{Name: ".", Mode: snapshot.ModeDir, Ino: s.Ino(d.idx)}
	case 1:
		e = fuse.DirEntry{Name: "..", Mode: snapshot.ModeDir, Ino: s.Ino(s.Parent(d.idx))}
	default:
		lo, hi := s.Children(d.idx)
		c := lo + d.pos - 2
		if c >= hi {
			return nil, 0
		}
		e = fuse.DirEntry{Name: s.Name(c), Mode: s.Mode(c), Ino: s.Ino(c)}
	}
	d.pos++
	e.Off = uint64(d.pos)
	return &e, 0
}

func (d *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	d.mu.Lock()
	d.pos = uint32(off)
	d.mu.Unlock()
	return 0
}
