package snapshot

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
)

// Entry is one child of a directory as handed to a Builder.
type Entry struct {
	Name   string
	Attr   Attr
	Target string // symlink target
	// ACL is the value Builder.InternACL returned for this entry; 0 is none.
	ACL uint32
	// Dir is the Builder directory id of this entry's own listing when it
	// is a directory; NoDir otherwise, or when the listing could not be read
	// (the directory then shows empty).
	Dir int32
}

// NoDir marks an Entry without a listing of its own.
const NoDir int32 = -1

// Builder collects directory listings in any order, from many goroutines,
// and lays them out as a Snapshot. Directory id 0 is the root.
type Builder struct {
	mu      sync.Mutex
	dirs    [][]Entry
	errors  int64
	acls    aclTable
	rootACL uint32
	// aclsRecorded is set when every entry's ACLs were asked for.
	aclsRecorded bool
}

// NewBuilder returns a Builder whose root directory has id 0.
func NewBuilder() *Builder {
	return &Builder{dirs: make([][]Entry, 1)}
}

// NewDir reserves an id for a directory whose listing comes later.
func (b *Builder) NewDir() int32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dirs = append(b.dirs, nil)
	return int32(len(b.dirs) - 1)
}

// SetDir records the listing of directory id. The slice is taken over.
func (b *Builder) SetDir(id int32, entries []Entry) {
	b.mu.Lock()
	b.dirs[id] = entries
	b.mu.Unlock()
}

// AddErrors counts entries that could not be read.
func (b *Builder) AddErrors(n int64) {
	b.mu.Lock()
	b.errors += n
	b.mu.Unlock()
}

// Build lays the collected listings out breadth-first. root holds the root
// directory's own attributes.
func (b *Builder) Build(root Attr) (*Snapshot, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	n, nameBytes := 1, 0
	for _, es := range b.dirs {
		n += len(es)
		for i := range es {
			nameBytes += len(es[i].Name)
		}
	}
	if n >= math.MaxUint32 || nameBytes >= math.MaxUint32 {
		return nil, fmt.Errorf("snapshot: %d entries with %d name bytes exceed the 32-bit layout", n, nameBytes)
	}
	l := newLayout(n, nameBytes)
	s := l.s
	l.add("", root, "", 0, b.rootACL)
	for i := 0; i < len(s.mode); i++ {
		s.kids[i] = uint32(len(s.mode))
		d := l.listing[i]
		if d == NoDir || s.mode[i]&ModeType != ModeDir {
			continue
		}
		es := b.dirs[d]
		slices.SortFunc(es, func(x, y Entry) int { return strings.Compare(x.Name, y.Name) })
		for k := range es {
			if k > 0 && es[k].Name == es[k-1].Name {
				return nil, fmt.Errorf("snapshot: duplicate name %q in one directory", es[k].Name)
			}
			l.add(es[k].Name, es[k].Attr, es[k].Target, es[k].Dir, es[k].ACL)
		}
		// Free listings as they are consumed so peak memory falls during layout.
		b.dirs[d] = nil
	}
	s.kids[len(s.mode)] = uint32(len(s.mode))
	s.nameOff = append(s.nameOff, uint32(len(s.names)))
	s.targets = []byte(l.targets.String())
	b.takeACLs(s)
	s.aclsRecorded = b.aclsRecorded
	s.stats.Entries = int64(len(s.mode))
	s.stats.Errors = b.errors
	if len(s.mode) != n {
		return nil, fmt.Errorf("snapshot: %d listed entries are unreachable from the root", n-len(s.mode))
	}
	return s, nil
}

// layout is Build's work in progress: the snapshot's columns as they fill.
type layout struct {
	s        *Snapshot
	n        int // entries in all
	ownerIdx map[Owner]uint32
	// listing[i] is the Builder dir id of final entry i; it is the only
	// per-entry scratch the layout needs.
	listing []int32
	targets strings.Builder
}

func newLayout(n, nameBytes int) *layout {
	return &layout{n: n, ownerIdx: map[Owner]uint32{}, listing: make([]int32, 0, n), s: &Snapshot{
		names:   make([]byte, 0, nameBytes),
		nameOff: make([]uint32, 0, n+1),
		kids:    make([]uint32, n+1),
		mode:    make([]uint32, 0, n),
		owner:   make([]uint32, 0, n),
		nlink:   make([]uint32, 0, n),
		size:    make([]int64, 0, n),
		mtime:   make([]int64, 0, n),
		ctime:   make([]int64, 0, n),
		atime:   make([]int64, 0, n),
		ino:     make([]uint64, 0, n),
	}}
}

// add appends one entry; dir is its Builder dir id if it is a directory.
func (l *layout) add(name string, a Attr, target string, dir int32, acl uint32) {
	s := l.s
	idx := uint32(len(s.mode))
	s.appendACL(idx, acl, l.n)
	s.nameOff = append(s.nameOff, uint32(len(s.names)))
	s.names = append(s.names, name...)
	o := Owner{a.Uid, a.Gid}
	oi, ok := l.ownerIdx[o]
	if !ok {
		oi = uint32(len(s.owners))
		l.ownerIdx[o] = oi
		s.owners = append(s.owners, o)
	}
	s.mode = append(s.mode, a.Mode)
	s.owner = append(s.owner, oi)
	s.nlink = append(s.nlink, a.Nlink)
	s.size = append(s.size, a.Size)
	s.mtime = append(s.mtime, a.Mtime)
	s.ctime = append(s.ctime, a.Ctime)
	s.atime = append(s.atime, a.Atime)
	s.ino = append(s.ino, a.Ino)
	l.listing = append(l.listing, dir)
	switch a.Mode & ModeType {
	case ModeLink:
		s.links = append(s.links, sideRec{Idx: idx, Off: uint32(l.targets.Len()), Len: uint32(len(target))})
		l.targets.WriteString(target)
		s.stats.Symlinks++
	case ModeChr, ModeBlk:
		s.rdevs = append(s.rdevs, rdevRec{Idx: idx, Rdev: a.Rdev})
		s.stats.Other++
	case ModeDir:
		s.stats.Dirs++
	case ModeReg:
		s.stats.Files++
		s.stats.Bytes += a.Size
	default:
		s.stats.Other++
	}
}
