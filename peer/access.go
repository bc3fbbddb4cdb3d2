package peer

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/snapshot"
)

// Cred is a user as the server checks read permission for.
type Cred struct {
	Uid  uint32
	Gids []uint32 // primary group first
}

// ProcessCred returns the process's effective credentials.
func ProcessCred() (*Cred, error) {
	groups, err := os.Getgroups()
	if err != nil {
		return nil, fmt.Errorf("peer: groups: %w", err)
	}
	c := &Cred{Uid: uint32(os.Geteuid()), Gids: []uint32{uint32(os.Getegid())}}
	for _, g := range groups {
		c.Gids = append(c.Gids, uint32(g))
	}
	return c, nil
}

// SnapshotFiles checks requests against a snapshot.
type SnapshotFiles struct{ Snap *snapshot.Snapshot }

var _ Files = SnapshotFiles{}

// Check implements Files: the path must resolve in the snapshot, name by
// name from the root, to a regular file of key's identity, and cred must
// have search permission on every directory on the way and read
// permission on the file, by the snapshot's modes and owners. An entry
// with an extended ACL is checked by its owner and "other" bits only, so
// an ACL can cost a peer a source read but never widen access.
func (f SnapshotFiles) Check(key blockcache.Key, cred *Cred) error {
	s := f.Snap
	idx := uint32(0)
	for name := range strings.SplitSeq(key.Path, "/") {
		if !may(s, idx, cred, 0o1) {
			return fmt.Errorf("%s: %w", key.Path, ErrDenied)
		}
		next, ok := s.Lookup(idx, name)
		if !ok || name == "" {
			return fmt.Errorf("%s: %w", key.Path, ErrNotInSnapshot)
		}
		idx = next
	}
	a := s.Attr(idx)
	if !a.IsRegular() || a.Ino != key.Ino || a.Size != key.Size || a.Mtime != key.Mtime {
		return fmt.Errorf("%s: not this identity in the snapshot: %w", key.Path, ErrNotInSnapshot)
	}
	if !may(s, idx, cred, 0o4) {
		return fmt.Errorf("%s: %w", key.Path, ErrDenied)
	}
	return nil
}

// may reports whether cred has permission bits want (1 search, 4 read) on
// entry idx.
func may(s *snapshot.Snapshot, idx uint32, cred *Cred, want uint32) bool {
	if cred.Uid == 0 {
		return true
	}
	a := s.Attr(idx)
	mode := s.Mode(idx)
	switch {
	case a.Uid == cred.Uid:
		return mode>>6&want == want
	case s.ACL(idx).Access == nil && slices.Contains(cred.Gids, a.Gid):
		return mode>>3&want == want
	}
	return mode&want == want
}
