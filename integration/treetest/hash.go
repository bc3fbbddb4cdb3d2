package treetest

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// HashTree digests every entry below root (path, type, permission bits,
// size, symlink target and content) into one hex string. Timestamps,
// ownership and inode numbers are left out so that a fresh copy of a tree
// hashes the same as the original; use CompareTrees to check those.
func HashTree(t testing.TB, root string) string {
	t.Helper()
	type entry struct {
		rel    string
		st     unix.Stat_t
		target string
	}
	var entries []entry
	var regular []int // indexes into entries
	// WalkDir visits in lexical order, which makes the digest independent
	// of readdir order.
	err := filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		e := entry{rel: rel}
		if err := unix.Lstat(p, &e.st); err != nil {
			return &fs.PathError{Op: "lstat", Path: p, Err: err}
		}
		switch e.st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			// os.Readlink grows its buffer rather than trusting st_size,
			// which a broken mount may get wrong.
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case unix.S_IFREG:
			regular = append(regular, len(entries))
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		t.Fatalf("treetest: HashTree: %v", err)
	}

	sums := make([][sha256.Size]byte, len(regular))
	errs := make([]error, len(regular))
	parallel(len(regular), func(i int) {
		sums[i], errs[i] = hashFile(filepath.Join(root, entries[regular[i]].rel))
	})
	content := make(map[int][sha256.Size]byte, len(regular))
	for i, idx := range regular {
		if errs[i] != nil {
			t.Fatalf("treetest: HashTree: %v", errs[i])
		}
		content[idx] = sums[i]
	}

	h := sha256.New()
	for i, e := range entries {
		typ := e.st.Mode & unix.S_IFMT
		writeField(h, []byte(e.rel))
		writeUint(h, uint64(typ))
		writeUint(h, uint64(e.st.Mode&0o7777))
		var size uint64
		if typ == unix.S_IFREG || typ == unix.S_IFLNK {
			size = uint64(e.st.Size)
		}
		writeUint(h, size)
		writeField(h, []byte(e.target))
		sum := content[i]
		writeField(h, sum[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Fields are length-prefixed because names may contain any byte but NUL and
// '/', so no separator could keep the encoding unambiguous.
func writeField(h hash.Hash, b []byte) {
	writeUint(h, uint64(len(b)))
	h.Write(b)
}

func writeUint(h hash.Hash, v uint64) {
	var buf [8]byte
	binary.BigEndian.PutUint64(buf[:], v)
	h.Write(buf[:])
}
