// Package snapshot holds the immutable metadata image of a source tree that a
// cachefs mount serves from, and the parallel walker that takes it.
//
// # Job
//
// A mount answers lookup, getattr, readdir, readlink and statfs from a
// Snapshot, never from the source. The walker (Walk) visits the source once,
// with many concurrent metadata calls in flight so that per-call latency of a
// shared filesystem is hidden; the Builder then lays the result out in
// columns.
//
// # Layout
//
// Entries are numbered in breadth-first order with each directory's children
// contiguous and sorted by name bytes. That single ordering gives, for free:
//
//   - children of entry i as the index range [kids[i], kids[i+1]);
//   - name lookup by binary search within that range;
//   - the parent of i as the last directory whose range starts at or before i
//     (binary search over kids, which never decreases), so no parent column.
//
// Names live in one byte arena delimited by nameOff (also n+1 long). Symlink
// targets and device numbers are rare and sit in small side tables sorted by
// entry index. Owners are interned, because a dataset usually has one or two.
// POSIX ACLs are stored once per distinct value behind a per-entry index that
// exists only when some entry has one (acl.go).
// Nothing in a Snapshot holds a Go pointer per entry, so the garbage collector
// never scans it and a million entries cost a few dozen slices.
//
// # Invariants
//
//   - A Snapshot is never modified after Build returns; readers need no locks.
//   - Index 0 is the root; it has an empty name.
//   - Inode numbers are the source's, so hard links keep one inode number.
//     Entries on another device than the root get a derived number (MixIno) so
//     two devices cannot collide.
package snapshot

import (
	"bytes"
	"sort"
	"unsafe"
)

// Attr is the per-entry metadata recorded by a walk.
type Attr struct {
	Mode  uint32 // st_mode, type bits included
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Size  int64
	Mtime int64 // ns since the epoch
	Ctime int64
	Atime int64
	Ino   uint64
	Rdev  uint64 // only for block and character devices
}

// Mode type bits, repeated here so callers need no syscall import for them.
const (
	ModeType = 0o170000
	ModeDir  = 0o040000
	ModeReg  = 0o100000
	ModeLink = 0o120000
	ModeChr  = 0o020000
	ModeBlk  = 0o060000
)

// IsDir reports whether the attributes describe a directory.
func (a Attr) IsDir() bool { return a.Mode&ModeType == ModeDir }

// IsRegular reports whether the attributes describe a regular file.
func (a Attr) IsRegular() bool { return a.Mode&ModeType == ModeReg }

// Owner is an interned uid/gid pair.
type Owner struct{ Uid, Gid uint32 }

type sideRec struct {
	Idx uint32
	Off uint32 // into targets for links
	Len uint32
}

type rdevRec struct {
	Idx  uint32
	Rdev uint64
}

// Stats summarises a snapshot.
type Stats struct {
	Entries  int64 `json:"entries"` // every entry below and including the root
	Dirs     int64 `json:"dirs"`
	Files    int64 `json:"files"`
	Symlinks int64 `json:"symlinks"`
	Other    int64 `json:"other"`
	Bytes    int64 `json:"bytes"`      // sum of regular file sizes
	Errors   int64 `json:"unreadable"` // directories or entries the walk could not read
}

// Snapshot is the immutable, pointer-free tree. See the package comment.
type Snapshot struct {
	names   []byte
	nameOff []uint32
	kids    []uint32
	mode    []uint32
	owner   []uint32
	nlink   []uint32
	size    []int64
	mtime   []int64
	ctime   []int64
	atime   []int64
	ino     []uint64

	owners  []Owner
	links   []sideRec
	targets []byte
	rdevs   []rdevRec

	// POSIX ACLs; see acl.go.
	acl     []uint32
	aclSets []aclSet
	aclOff  []uint32
	aclData []byte
	// aclsRecorded says the walk asked for every entry's ACLs; without
	// them the tables above are empty.
	aclsRecorded bool
	// shared marks a view made by Shared.
	shared bool

	stats Stats
}

// Len is the number of entries, the root included.
func (s *Snapshot) Len() int { return len(s.mode) }

// Stats returns the summary computed at build time.
func (s *Snapshot) Stats() Stats { return s.stats }

// NameBytes returns entry i's name without copying; callers must not modify it.
func (s *Snapshot) NameBytes(i uint32) []byte { return s.names[s.nameOff[i]:s.nameOff[i+1]] }

// Name returns entry i's name.
func (s *Snapshot) Name(i uint32) string { return string(s.NameBytes(i)) }

// Children returns the half-open index range of entry i's children.
func (s *Snapshot) Children(i uint32) (start, end uint32) { return s.kids[i], s.kids[i+1] }

// Lookup finds name among dir's children.
func (s *Snapshot) Lookup(dir uint32, name string) (uint32, bool) {
	lo, hi := s.kids[dir], s.kids[dir+1]
	for lo < hi {
		mid := lo + (hi-lo)/2
		// Comparing as bytes keeps the order identical to the one Build sorted by.
		c := bytes.Compare(s.NameBytes(mid), unsafe.Slice(unsafe.StringData(name), len(name)))
		switch {
		case c == 0:
			return mid, true
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return 0, false
}

// Parent returns the parent of entry i; the root is its own parent.
func (s *Snapshot) Parent(i uint32) uint32 {
	if i == 0 {
		return 0
	}
	// The first p with kids[p+1] > i owns i, because ranges are laid out in
	// index order and only directories have non-empty ones.
	n := len(s.mode)
	p := sort.Search(n, func(p int) bool { return s.kids[p+1] > i })
	return uint32(p)
}

// Path returns entry i's path relative to the root ("" for the root).
func (s *Snapshot) Path(i uint32) string {
	if i == 0 {
		return ""
	}
	var parts [][]byte
	total := 0
	for j := i; j != 0; j = s.Parent(j) {
		nb := s.NameBytes(j)
		parts = append(parts, nb)
		total += len(nb) + 1
	}
	buf := make([]byte, 0, total)
	for k := len(parts) - 1; k >= 0; k-- {
		buf = append(buf, parts[k]...)
		if k > 0 {
			buf = append(buf, '/')
		}
	}
	return string(buf)
}

// Attr returns entry i's attributes.
func (s *Snapshot) Attr(i uint32) Attr {
	o := s.owners[s.owner[i]]
	a := Attr{
		Mode:  s.restrictUnrecorded(i, s.mode[i]),
		Uid:   o.Uid,
		Gid:   o.Gid,
		Nlink: s.nlink[i],
		Size:  s.size[i],
		Mtime: s.mtime[i],
		Ctime: s.ctime[i],
		Atime: s.atime[i],
		Ino:   s.ino[i],
	}
	if m := a.Mode & ModeType; m == ModeChr || m == ModeBlk {
		k := sort.Search(len(s.rdevs), func(k int) bool { return s.rdevs[k].Idx >= i })
		if k < len(s.rdevs) && s.rdevs[k].Idx == i {
			a.Rdev = s.rdevs[k].Rdev
		}
	}
	return a
}

// Mode returns entry i's st_mode without building a whole Attr.
func (s *Snapshot) Mode(i uint32) uint32 { return s.restrictUnrecorded(i, s.mode[i]) }

// Ino returns entry i's inode number.
func (s *Snapshot) Ino(i uint32) uint64 { return s.ino[i] }

// Target returns the target of symlink i, or "" if i is not a symlink.
func (s *Snapshot) Target(i uint32) string {
	k := sort.Search(len(s.links), func(k int) bool { return s.links[k].Idx >= i })
	if k < len(s.links) && s.links[k].Idx == i {
		r := s.links[k]
		return string(s.targets[r.Off : r.Off+r.Len])
	}
	return ""
}

// SizeBytes is the memory the snapshot's arrays occupy, by capacity.
func (s *Snapshot) SizeBytes() int64 {
	n := int64(cap(s.names)) + int64(cap(s.targets)) + int64(cap(s.aclData))
	n += 4 * int64(cap(s.nameOff)+cap(s.kids)+cap(s.mode)+cap(s.owner)+cap(s.nlink)+cap(s.acl)+cap(s.aclOff))
	n += 8 * int64(cap(s.size)+cap(s.mtime)+cap(s.ctime)+cap(s.atime)+cap(s.ino))
	n += int64(cap(s.owners))*int64(unsafe.Sizeof(Owner{})) +
		int64(cap(s.links))*int64(unsafe.Sizeof(sideRec{})) +
		int64(cap(s.rdevs))*int64(unsafe.Sizeof(rdevRec{})) +
		int64(cap(s.aclSets))*int64(unsafe.Sizeof(aclSet{}))
	return n
}
