package snapshot

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzIndexDecode feeds DecodeIndex arbitrary bytes, and the same bytes with
// their length field and checksum made right, so that edits reach the
// structural and entry checks instead of stopping at the checksum. It must
// never panic, and whatever it accepts must be a tree checkTree accepts.
// The seeds in testdata/fuzz/FuzzIndexDecode are checked, and rewritten on
// request, by TestFuzzSeeds.
func FuzzIndexDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, fixSum(data)} {
			s, _, err := DecodeIndex(b)
			if err != nil {
				if s != nil {
					t.Fatalf("refused with %v but returned a snapshot", err)
				}
				continue
			}
			checkTree(t, s)
		}
	})
}

// fixSum returns a copy of data with the recorded length and the checksum
// of what it holds, if it is long enough to have them.
func fixSum(data []byte) []byte {
	b := bytes.Clone(data)
	if len(b) < preambleSize+trailerSize {
		return b
	}
	binary.LittleEndian.PutUint64(b[16:], uint64(len(b)))
	binary.LittleEndian.PutUint32(b[len(b)-4:], 0)
	return resum(b)
}

// checkTree is the property an accepted index must have, written apart from
// the validator: every entry but the root has exactly one parent, which
// comes before it; names are path components, strictly sorted, each found
// by Lookup; paths stay below the root; no entry repeats the inode number
// of its directory or the root; symlink targets hold no NUL.
func checkTree(t *testing.T, s *Snapshot) {
	t.Helper()
	n := uint32(s.Len())
	if s.Attr(0).Mode&ModeType != ModeDir || s.Name(0) != "" {
		t.Fatalf("root: mode %o, name %q", s.Attr(0).Mode, s.Name(0))
	}
	seen := make([]bool, n)
	for i := uint32(0); i < n; i++ {
		lo, hi := s.Children(i)
		if lo < hi && s.Mode(i)&ModeType != ModeDir {
			t.Fatalf("entry %d: children but mode %o", i, s.Mode(i))
		}
		for c := lo; c < hi; c++ {
			if c <= i || c >= n || seen[c] {
				t.Fatalf("entry %d: child %d out of order, out of range or seen twice", i, c)
			}
			seen[c] = true
			checkChild(t, s, i, c, lo)
		}
	}
	for c := uint32(1); c < n; c++ {
		if !seen[c] {
			t.Fatalf("entry %d has no parent", c)
		}
	}
}

func checkChild(t *testing.T, s *Snapshot, dir, c, first uint32) {
	t.Helper()
	name := s.Name(c)
	if name == "" || len(name) > 255 || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		t.Fatalf("entry %d: name %q", c, name)
	}
	if c > first && s.Name(c-1) >= name {
		t.Fatalf("entry %d: %q after %q", c, name, s.Name(c-1))
	}
	if got, ok := s.Lookup(dir, name); !ok || got != c {
		t.Fatalf("entry %d: Lookup(%d, %q) = %d, %v", c, dir, name, got, ok)
	}
	if s.Parent(c) != dir {
		t.Fatalf("entry %d: Parent %d, want %d", c, s.Parent(c), dir)
	}
	if p := s.Path(c); !filepath.IsLocal(p) || filepath.Clean(p) != p || filepath.Base(p) != name {
		t.Fatalf("entry %d: path %q", c, p)
	}
	if ino := s.Ino(c); ino != 0 && (ino == s.Ino(0) || ino == s.Ino(dir)) {
		t.Fatalf("entry %d: inode number %d of its directory or the root", c, ino)
	}
	target := s.Target(c)
	if strings.IndexByte(target, 0) >= 0 || (target != "" && s.Mode(c)&ModeType != ModeLink) {
		t.Fatalf("entry %d: target %q, mode %o", c, target, s.Mode(c))
	}
	_ = s.Attr(c)
}

// TestFuzzSeeds checks that the seed corpus of FuzzIndexDecode is what
// this format writes: a small valid index and damaged variants of it. Seeds
// of another format version would only exercise the version check. With
// CACHEFS_WRITE_FUZZ_SEEDS=1 it rewrites them instead.
func TestFuzzSeeds(t *testing.T) {
	write := os.Getenv("CACHEFS_WRITE_FUZZ_SEEDS") != ""
	dir := filepath.Join("testdata", "fuzz", "FuzzIndexDecode")
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, data := range fuzzSeeds(t) {
		body := []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data))
		p := filepath.Join(dir, name)
		if write {
			if err := os.WriteFile(p, body, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, body) {
			t.Errorf("seed %s is missing or stale (%v); rewrite the seeds: CACHEFS_WRITE_FUZZ_SEEDS=1 go test -run TestFuzzSeeds ./snapshot/", p, err)
		}
	}
}

func fuzzSeeds(t *testing.T) map[string][]byte {
	sub := []Entry{
		file("name-a", 10), file("name-b", 11), file("hard", 10),
		{Name: "l", Attr: Attr{Mode: ModeLink | 0o777, Nlink: 1, Ino: 12, Size: 5}, Target: "tgt-x", Dir: NoDir},
		{Name: "tty", Attr: Attr{Mode: ModeChr | 0o600, Nlink: 1, Ino: 13, Rdev: 0x503}, Dir: NoDir},
	}
	good := encode(t, craftTree(t, sub))
	flip := bytes.Clone(good)
	flip[len(flip)/2] ^= 0x10
	return map[string][]byte{
		"valid":       good,
		"truncated":   good[:len(good)*2/3],
		"bitflip":     flip,
		"unsorted":    rename(t, good, "name-aname-b", "name-bname-a"),
		"duplicate":   rename(t, good, "name-aname-b", "name-aname-a"),
		"slash":       rename(t, good, "name-a", "../etc"),
		"dotdot":      encode(t, craftTree(t, []Entry{file("..", 10)})),
		"nul":         rename(t, good, "name-b", "nam\x00-b"),
		"root-inode":  encode(t, craftTree(t, []Entry{file("x", 1)})),
		"long-name":   encode(t, craftTree(t, []Entry{file(strings.Repeat("n", 256), 10)})),
		"not-indexed": []byte("sub-01/eeg.edf\n"),
	}
}
