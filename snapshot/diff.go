package snapshot

import (
	"bytes"
	"strings"
)

// DiffKind says how an entry differs between two snapshots.
type DiffKind uint8

const (
	Added   DiffKind = iota + 1 // only in the second snapshot
	Removed                     // only in the first
	Changed                     // in both, with different attributes
)

func (k DiffKind) String() string {
	switch k {
	case Added:
		return "added"
	case Removed:
		return "removed"
	case Changed:
		return "changed"
	}
	return "?"
}

// Change is the set of attributes that differ for a Changed entry.
type Change uint16

const (
	ChangedType   Change = 1 << iota // file type (the entry was replaced by another kind)
	ChangedSize                      // size of a non-directory
	ChangedMtime                     // mtime of a non-directory
	ChangedMode                      // permission bits
	ChangedOwner                     // uid or gid
	ChangedTarget                    // symlink target
	ChangedIno                       // inode number (replaced, e.g. by rsync's rename)
	ChangedNlink                     // link count of a non-directory
	ChangedRdev                      // device number
	ChangedACL                       // POSIX ACLs, when both snapshots recorded them
)

var changeNames = []string{"type", "size", "mtime", "mode", "owner", "target", "inode", "links", "rdev", "acl"}

func (c Change) String() string {
	var parts []string
	for k, name := range changeNames {
		if c&(1<<k) != 0 {
			parts = append(parts, name)
		}
	}
	return strings.Join(parts, ", ")
}

// DiffEntry is one difference.
type DiffEntry struct {
	Path string // relative to the root; "" is the root itself
	Kind DiffKind
	What Change // for Changed
	// Entries counts the entries this difference covers: for an added or
	// removed directory, the directory and everything below it; 1 otherwise.
	Entries int64
}

// DiffResult summarises how b differs from a.
type DiffResult struct {
	// Entries added, removed and changed. An added or removed directory
	// counts with everything below it; a directory replaced by a file (or
	// the reverse) counts as one change plus its contents removed (added).
	Added, Removed, Changed int64
	// The first differences of each kind in depth-first name order, up to
	// the limit given to Diff. An added or removed directory is listed
	// once, not with each entry below it.
	AddedPaths, RemovedPaths, ChangedPaths []DiffEntry
}

// Same reports whether no difference was found.
func (d *DiffResult) Same() bool { return d.Added == 0 && d.Removed == 0 && d.Changed == 0 }

// Diff compares two snapshots of a tree by name, from the root down, and
// lists up to limit paths of each kind.
//
// What counts as a change: type, permission bits, owner, inode number,
// symlink target and device number of every entry; size, mtime and link
// count of every entry but directories; POSIX ACLs of every entry when both
// snapshots recorded them (a shared mount enforces the recorded ones, so
// an ACL revoked on the source since is access the mount still grants). A directory's size, mtime and link
// count follow its entries, whose additions and removals are reported
// themselves. ctime and atime are ignored: reading a file changes its atime,
// and a ctime change with no other difference changes nothing a mount shows.
func Diff(a, b *Snapshot, limit int) DiffResult {
	d := &differ{a: a, b: b, limit: limit, acls: a.ACLsRecorded() && b.ACLsRecorded()}
	d.entry(0, 0)
	return d.res
}

type differ struct {
	a, b  *Snapshot
	limit int
	acls  bool // compare ACLs
	path  []byte
	res   DiffResult
}

func (d *differ) note(list *[]DiffEntry, e DiffEntry) {
	if len(*list) < d.limit {
		e.Path = string(d.path)
		*list = append(*list, e)
	}
}

// subtree counts entry i of s and everything below it.
func subtree(s *Snapshot, i uint32) int64 {
	n := int64(0)
	stack := []uint32{i}
	for len(stack) > 0 {
		j := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n++
		for c := s.kids[j]; c < s.kids[j+1]; c++ {
			stack = append(stack, c)
		}
	}
	return n
}

// entry compares entry ia of a with entry ib of b, which have the same path
// (d.path).
func (d *differ) entry(ia, ib uint32) {
	a, b := d.a, d.b
	ma, mb := a.mode[ia], b.mode[ib]
	var what Change
	if ma&ModeType != mb&ModeType {
		what = ChangedType
		d.res.Changed++
		d.note(&d.res.ChangedPaths, DiffEntry{Kind: Changed, What: what, Entries: 1})
		// What was below a directory is gone, or new.
		if n := subtree(a, ia) - 1; n > 0 {
			d.res.Removed += n
		}
		if n := subtree(b, ib) - 1; n > 0 {
			d.res.Added += n
		}
		return
	}
	dir := ma&ModeType == ModeDir
	if ma&^ModeType != mb&^ModeType {
		what |= ChangedMode
	}
	if a.owners[a.owner[ia]] != b.owners[b.owner[ib]] {
		what |= ChangedOwner
	}
	if a.ino[ia] != b.ino[ib] {
		what |= ChangedIno
	}
	if !dir {
		if a.size[ia] != b.size[ib] {
			what |= ChangedSize
		}
		if a.mtime[ia] != b.mtime[ib] {
			what |= ChangedMtime
		}
		if a.nlink[ia] != b.nlink[ib] {
			what |= ChangedNlink
		}
	}
	switch ma & ModeType {
	case ModeLink:
		if a.Target(ia) != b.Target(ib) {
			what |= ChangedTarget
		}
	case ModeChr, ModeBlk:
		if a.Attr(ia).Rdev != b.Attr(ib).Rdev {
			what |= ChangedRdev
		}
	}
	if d.acls && !sameACL(a.ACL(ia), b.ACL(ib)) {
		what |= ChangedACL
	}
	if what != 0 {
		d.res.Changed++
		d.note(&d.res.ChangedPaths, DiffEntry{Kind: Changed, What: what, Entries: 1})
	}
	if dir {
		d.children(ia, ib)
	}
}

// children merges the sorted child ranges of two directories.
func (d *differ) children(ia, ib uint32) {
	a, b := d.a, d.b
	i, iend := a.kids[ia], a.kids[ia+1]
	j, jend := b.kids[ib], b.kids[ib+1]
	base := len(d.path)
	push := func(name []byte) {
		if base > 0 {
			d.path = append(d.path, '/')
		}
		d.path = append(d.path, name...)
	}
	for i < iend || j < jend {
		var c int
		switch {
		case i == iend:
			c = 1
		case j == jend:
			c = -1
		default:
			c = bytes.Compare(a.NameBytes(i), b.NameBytes(j))
		}
		switch {
		case c < 0:
			push(a.NameBytes(i))
			n := subtree(a, i)
			d.res.Removed += n
			d.note(&d.res.RemovedPaths, DiffEntry{Kind: Removed, Entries: n})
			i++
		case c > 0:
			push(b.NameBytes(j))
			n := subtree(b, j)
			d.res.Added += n
			d.note(&d.res.AddedPaths, DiffEntry{Kind: Added, Entries: n})
			j++
		default:
			push(a.NameBytes(i))
			d.entry(i, j)
			i++
			j++
		}
		d.path = d.path[:base]
	}
}

func sameACL(x, y ACL) bool {
	return x.Unrecorded == y.Unrecorded && bytes.Equal(x.Access, y.Access) && bytes.Equal(x.Default, y.Default)
}
