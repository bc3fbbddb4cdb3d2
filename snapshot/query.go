package snapshot

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Why a path given to Resolve names nothing; callers report these as the
// user's mistake.
var (
	ErrLeavesRoot = errors.New("leaves the mount")
	ErrNotFound   = errors.New("not in the mount: no such file or directory")
	ErrNotDir     = errors.New("not a directory")
	ErrSymlink    = errors.New("is a symbolic link; name what it points to instead")
	ErrLongName   = fmt.Errorf("has a name longer than %d bytes", MaxNameLen)
)

// Resolve finds a path relative to the root, one component at a time as
// the kernel would: ".." climbs to the parent and is refused at the root,
// where it would leave the tree (a lexical clean would instead stop at the
// root and name everything). Symbolic links are refused rather than
// followed, in the path and at its end: a link's target may lie outside.
func (s *Snapshot) Resolve(rel string) (uint32, error) {
	idx := uint32(0)
	for _, part := range strings.Split(rel, "/") {
		switch {
		case part == "" || part == ".":
			continue
		case len(part) > MaxNameLen:
			return 0, fmt.Errorf("%s %w", rel, ErrLongName)
		case s.isLink(idx):
			return 0, fmt.Errorf("%s %w", s.Path(idx), ErrSymlink)
		case !s.Attr(idx).IsDir():
			return 0, fmt.Errorf("%s: %w", s.Path(idx), ErrNotDir)
		case part == "..":
			if idx == 0 {
				return 0, fmt.Errorf("%s %w", rel, ErrLeavesRoot)
			}
			idx = s.Parent(idx)
			continue
		}
		c, ok := s.Lookup(idx, part)
		if !ok {
			return 0, fmt.Errorf("%s: %w", rel, ErrNotFound)
		}
		idx = c
	}
	if s.isLink(idx) {
		return 0, fmt.Errorf("%s %w", s.Path(idx), ErrSymlink)
	}
	return idx, nil
}

func (s *Snapshot) isLink(i uint32) bool {
	return s.Attr(i).Mode&ModeType == ModeLink
}

// Files lists every regular file at or below the entries roots, each once,
// and the bytes they hold.
func (s *Snapshot) Files(roots []uint32) (files []uint32, bytes int64) {
	seen := map[uint32]bool{}
	for _, idx := range roots {
		for q := []uint32{idx}; len(q) > 0; q = q[1:] {
			i := q[0]
			a := s.Attr(i)
			switch {
			case a.IsDir():
				lo, hi := s.Children(i)
				for c := lo; c < hi; c++ {
					q = append(q, c)
				}
			case a.IsRegular() && !seen[i]:
				seen[i] = true
				files = append(files, i)
				bytes += a.Size
			}
		}
	}
	return files, bytes
}

// SameRoot reports whether st, a stat of a source root, is the directory
// the index was made from. Only the inode counts: the same directory is
// mounted under other paths, and other device numbers, on other nodes.
func (i IndexInfo) SameRoot(st *unix.Stat_t) bool {
	return st.Ino == i.RootIno
}
