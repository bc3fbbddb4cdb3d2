package snapshot

// Checks on the entries of a loaded index, beyond the structure validate
// checks. An index can come from anyone who can write the file (indexes
// sit on shared scratch space), and its CRC proves only that the bytes
// are the ones its writer meant. These checks make a loaded Snapshot a
// tree a walk could have produced, in the respects that confinement and
// lookups rely on:
//
//   - a name is one path component: non-empty, at most NAME_MAX bytes, not
//     "." or "..", no '/' and no NUL; joined onto SOURCE, a path of such
//     names stays below SOURCE;
//   - siblings are strictly increasing as bytes, the order Lookup's binary
//     search relies on, so no name is listed twice or listed but unfindable;
//   - no entry carries the inode number of its own directory or of the root,
//     which tools walking the mount (find, du, rsync) take for a loop;
//   - symlink targets hold no NUL, and symlink records belong to symlinks.
//
// Hard links legitimately share inode numbers, so a shared number is not
// refused in general: the mount keys its nodes by entry, not by inode
// number, so a shared number cannot make one entry serve another's bytes.
// Nothing here is a per-entry allocation; the cost is one pass over the
// name arena and one over the entries.

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
)

// ErrIndexInvalid is returned, wrapped with the entry and the reason, for an
// index whose checksum is valid but whose entries no walk produces.
var ErrIndexInvalid = errors.New("invalid")

// MaxNameLen is the longest name an index may hold: Linux's NAME_MAX, which
// the mount reports in statfs.
const MaxNameLen = 255

// validateEntries runs after validate, so child ranges are known to
// partition [1, n) with every child after its directory.
func (s *Snapshot) validateEntries() error {
	if err := s.validateNameBytes(); err != nil {
		return err
	}
	n := uint32(len(s.mode))
	for p := uint32(0); p < n; p++ {
		if lo, hi := s.kids[p], s.kids[p+1]; lo < hi {
			if err := s.validateChildren(p, lo, hi); err != nil {
				return err
			}
		}
	}
	return s.validateLinks()
}

// validateChildren checks the children [lo, hi) of directory p. It runs
// once per entry of every index loaded, so it reads the columns directly.
func (s *Snapshot) validateChildren(p, lo, hi uint32) error {
	names, off, inos := s.names, s.nameOff, s.ino
	rootIno, dirIno := inos[0], inos[p]
	var prev []byte
	for c := lo; c < hi; c++ {
		name := names[off[c]:off[c+1]]
		if uint(len(name)-1) >= MaxNameLen || name[0] == '.' {
			if why := badName(name); why != "" {
				return s.entryError(c, p, why)
			}
		}
		if c > lo && bytes.Compare(prev, name) >= 0 {
			return s.entryError(c, p, fmt.Sprintf("name %s is not after its sibling %s (names must be unique and sorted bytewise)", quoteName(name), quoteName(prev)))
		}
		if ino := inos[c]; ino != 0 && (ino == rootIno || ino == dirIno) {
			return s.entryError(c, p, fmt.Sprintf("name %s has inode number %d, the same as its directory or the root", quoteName(name), ino))
		}
		prev = name
	}
	return nil
}

// validateNameBytes scans the whole arena at once: far cheaper than a scan
// per name, and the entry is looked up only when something is found.
func (s *Snapshot) validateNameBytes() error {
	for _, b := range []struct {
		c    byte
		what string
	}{{'/', "'/'"}, {0, "NUL"}} {
		k := bytes.IndexByte(s.names, b.c)
		if k < 0 {
			continue
		}
		// The entry whose name holds byte k: the last with nameOff <= k.
		c := uint32(sort.Search(len(s.mode), func(i int) bool { return s.nameOff[i+1] > uint32(k) }))
		return s.entryError(c, s.Parent(c), fmt.Sprintf("name %s contains %s", quoteName(s.NameBytes(c)), b.what))
	}
	return nil
}

func (s *Snapshot) validateLinks() error {
	for _, l := range s.links {
		if s.mode[l.Idx]&ModeType != ModeLink {
			return s.entryError(l.Idx, s.Parent(l.Idx), "has a symlink target but is not a symlink")
		}
		if bytes.IndexByte(s.targets[l.Off:l.Off+l.Len], 0) >= 0 {
			return s.entryError(l.Idx, s.Parent(l.Idx), "symlink target contains NUL")
		}
	}
	return nil
}

// badName says what is wrong with one path component, or "" if nothing.
func badName(name []byte) string {
	switch {
	case len(name) == 0:
		return "empty name"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("name of %d bytes, over %d", len(name), MaxNameLen)
	case len(name) <= 2 && name[0] == '.' && (len(name) == 1 || name[1] == '.'):
		return fmt.Sprintf("name %q", name)
	}
	return ""
}

// entryError names entry c by its index and its directory's path, so the
// message stays one line however the names are made.
func (s *Snapshot) entryError(c, dir uint32, why string) error {
	path := "."
	if dir != 0 {
		path = s.Path(dir)
	}
	return fmt.Errorf("%w: entry %d in %s: %s", ErrIndexInvalid, c, quoteName([]byte(path)), why)
}

// quoteName quotes a name for a one-line message, cutting very long ones.
func quoteName(b []byte) string {
	const most = 80
	if len(b) > most {
		return fmt.Sprintf("%q...", b[:most])
	}
	return fmt.Sprintf("%q", b)
}
