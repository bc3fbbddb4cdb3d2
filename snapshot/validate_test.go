package snapshot

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// craftTree builds, with the exported Builder, a root holding "ok" and a
// directory "sub" with entries, as anyone could write one.
func craftTree(tb testing.TB, sub []Entry) *Snapshot {
	tb.Helper()
	b := NewBuilder()
	id := b.NewDir()
	b.SetDir(0, []Entry{
		{Name: "ok", Attr: Attr{Mode: ModeReg | 0o644, Nlink: 1, Ino: 2}, Dir: NoDir},
		{Name: "sub", Attr: Attr{Mode: ModeDir | 0o755, Nlink: 2, Ino: 3}, Dir: id},
	})
	b.SetDir(id, sub)
	s, err := b.Build(Attr{Mode: ModeDir | 0o755, Nlink: 3, Ino: 1})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func file(name string, ino uint64) Entry {
	return Entry{Name: name, Attr: Attr{Mode: ModeReg | 0o644, Nlink: 1, Ino: ino, Size: 5}, Dir: NoDir}
}

func encode(tb testing.TB, s *Snapshot) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if _, err := EncodeIndex(&buf, s, IndexInfo{Source: "/src"}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// rename replaces the only occurrence of old in an encoded index by a name
// of the same length, and fixes the checksum, as an editor of the file would.
func rename(tb testing.TB, data []byte, old, new string) []byte {
	tb.Helper()
	if len(old) != len(new) || bytes.Count(data, []byte(old)) != 1 {
		tb.Fatalf("cannot rename %q to %q", old, new)
	}
	return resum(bytes.Replace(bytes.Clone(data), []byte(old), []byte(new), 1))
}

func TestIndexRefusesBadEntries(t *testing.T) {
	link := Entry{Name: "l", Attr: Attr{Mode: ModeLink | 0o777, Nlink: 1, Ino: 20}, Target: "a\x00b", Dir: NoDir}
	cases := []struct {
		name string
		data []byte
		msg  string
	}{
		{"slash", encode(t, craftTree(t, []Entry{file("../../etc/shadow", 10)})), `entry 3 in "sub": name "../../etc/shadow" contains '/'`},
		{"dot dot", encode(t, craftTree(t, []Entry{file("..", 10)})), `entry 3 in "sub": name ".."`},
		{"dot", encode(t, craftTree(t, []Entry{file(".", 10)})), `name "."`},
		{"NUL", encode(t, craftTree(t, []Entry{file("a\x00b", 10)})), `name "a\x00b" contains NUL`},
		{"empty", encode(t, craftTree(t, []Entry{file("", 10), file("x", 11)})), `entry 3 in "sub": empty name`},
		{"too long", encode(t, craftTree(t, []Entry{file(strings.Repeat("n", 256), 10)})), "name of 256 bytes, over 255"},
		{"unsorted", rename(t, encode(t, craftTree(t, []Entry{file("name-a", 10), file("name-b", 11)})), "name-aname-b", "name-bname-a"), `name "name-a" is not after its sibling "name-b"`},
		{"duplicate", rename(t, encode(t, craftTree(t, []Entry{file("name-a", 10), file("name-b", 11)})), "name-aname-b", "name-aname-a"), `name "name-a" is not after its sibling "name-a"`},
		{"root inode", encode(t, craftTree(t, []Entry{file("x", 1)})), `entry 3 in "sub": name "x" has inode number 1, the same as its directory or the root`},
		{"parent inode", encode(t, craftTree(t, []Entry{file("x", 3)})), "has inode number 3"},
		{"target NUL", encode(t, craftTree(t, []Entry{link})), "symlink target contains NUL"},
	}
	for _, c := range cases {
		s, _, err := DecodeIndex(c.data)
		if s != nil || !errors.Is(err, ErrIndexInvalid) || !strings.Contains(err.Error(), c.msg) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: got %v, %v; want %v, one line containing %q", c.name, s != nil, err, ErrIndexInvalid, c.msg)
			continue
		}
		t.Logf("%s: %v", c.name, err)
	}
}

func TestIndexRefusesTargetOnNonSymlink(t *testing.T) {
	s := craftTree(t, []Entry{{Name: "l", Attr: Attr{Mode: ModeLink | 0o777, Nlink: 1, Ino: 20}, Target: "t", Dir: NoDir}})
	s.mode[s.links[0].Idx] = ModeReg | 0o644
	if _, _, err := DecodeIndex(encode(t, s)); !errors.Is(err, ErrIndexInvalid) || !strings.Contains(err.Error(), "not a symlink") {
		t.Errorf("symlink record on a regular file: %v", err)
	}
}

// TestIndexAcceptsHardLinks: entries sharing an inode number in different
// directories, or in one, are hard links and load.
func TestIndexAcceptsHardLinks(t *testing.T) {
	b := NewBuilder()
	a, d := b.NewDir(), b.NewDir()
	b.SetDir(0, []Entry{
		{Name: "a", Attr: Attr{Mode: ModeDir | 0o755, Nlink: 2, Ino: 2}, Dir: a},
		{Name: "b", Attr: Attr{Mode: ModeDir | 0o755, Nlink: 2, Ino: 3}, Dir: d},
	})
	b.SetDir(a, []Entry{file("x", 9), file("x2", 9)})
	b.SetDir(d, []Entry{file("y", 9), file(strings.Repeat("n", MaxNameLen), 10), file("...", 11), file(".x", 12)})
	s, err := b.Build(Attr{Mode: ModeDir | 0o755, Nlink: 4, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := DecodeIndex(encode(t, s)); err != nil {
		t.Fatal(err)
	}
}

// TestWalkedIndexesLoad: whatever a walk records, the validator accepts;
// readdir never yields '/', NUL, "." or "..", and Build sorts bytewise.
func TestWalkedIndexesLoad(t *testing.T) {
	root := awkwardTree(t)
	s, info := walkInfo(t, root)
	path := filepath.Join(t.TempDir(), "walked.index")
	if _, err := WriteIndex(path, s, info); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadIndex(path); err != nil {
		t.Fatal(err)
	}
	checkTree(t, s)
}

// BenchmarkValidateEntries is what the entry checks add to loading an
// index of a million entries (BenchmarkIndexLoad measures the whole load).
func BenchmarkValidateEntries(b *testing.B) {
	const n = 1_000_000
	s := synthetic(b, n)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.validateEntries(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/entry")
}
