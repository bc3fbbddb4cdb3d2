package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cachefs/cachefs/internal/testutil"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// awkwardTree is mkTree plus names a careless format would break on, and a
// character device when running as root.
func awkwardTree(t *testing.T) string {
	root := mkTree(t)
	for _, name := range []string{"new\nline", "tab\there", "sp ace", "\xff\xfe not utf-8", "é", strings.Repeat("n", 255), "-dash", ".hidden"} {
		if err := os.WriteFile(filepath.Join(root, "a", name), []byte(name), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/absolute/dangling", filepath.Join(root, "a/dangling")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(strings.Repeat("long/", 200), filepath.Join(root, "a/longlink")); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := unix.Mknod(filepath.Join(root, "chr"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatal(err)
		}
		if err := os.Lchown(filepath.Join(root, "a/one.txt"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// sameSnapshot fails t unless a and b hold the same arrays and answer every
// accessor alike; with every set, accessors are compared for each entry,
// otherwise for a sample.
func sameSnapshot(t *testing.T, a, b *Snapshot, every bool) {
	t.Helper()
	if a.Len() != b.Len() || a.Stats() != b.Stats() {
		t.Fatalf("len %d vs %d, stats %+v vs %+v", a.Len(), b.Len(), a.Stats(), b.Stats())
	}
	eq := func(name string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s differs", name)
		}
	}
	eq("names", bytes.Equal(a.names, b.names))
	eq("nameOff", slices.Equal(a.nameOff, b.nameOff))
	eq("kids", slices.Equal(a.kids, b.kids))
	eq("mode", slices.Equal(a.mode, b.mode))
	eq("owner", slices.Equal(a.owner, b.owner))
	eq("nlink", slices.Equal(a.nlink, b.nlink))
	eq("size", slices.Equal(a.size, b.size))
	eq("mtime", slices.Equal(a.mtime, b.mtime))
	eq("ctime", slices.Equal(a.ctime, b.ctime))
	eq("atime", slices.Equal(a.atime, b.atime))
	eq("ino", slices.Equal(a.ino, b.ino))
	eq("owners", slices.Equal(a.owners, b.owners))
	eq("links", slices.Equal(a.links, b.links))
	eq("targets", bytes.Equal(a.targets, b.targets))
	eq("rdevs", slices.Equal(a.rdevs, b.rdevs))
	if t.Failed() {
		t.FailNow()
	}
	step := 1
	if !every {
		step = max(1, a.Len()/5000)
	}
	for i := uint32(0); int(i) < a.Len(); i += uint32(step) {
		if a.Name(i) != b.Name(i) || a.Attr(i) != b.Attr(i) || a.Target(i) != b.Target(i) ||
			a.Parent(i) != b.Parent(i) || a.Path(i) != b.Path(i) || a.Mode(i) != b.Mode(i) || a.Ino(i) != b.Ino(i) {
			t.Fatalf("entry %d (%q) differs: %+v vs %+v", i, a.Path(i), a.Attr(i), b.Attr(i))
		}
		lo, hi := a.Children(i)
		lo2, hi2 := b.Children(i)
		if lo != lo2 || hi != hi2 {
			t.Fatalf("entry %d children differ", i)
		}
		if lo < hi {
			if c, ok := b.Lookup(i, a.Name(hi-1)); !ok || c != hi-1 {
				t.Fatalf("lookup of %q in %d: %d %v", a.Name(hi-1), i, c, ok)
			}
		}
	}
	// A loaded snapshot's arrays are exactly sized; a built one's side
	// tables may have spare capacity.
	if b.SizeBytes() > a.SizeBytes() {
		t.Errorf("SizeBytes %d after loading, %d before", b.SizeBytes(), a.SizeBytes())
	}
}

func walkInfo(t *testing.T, root string) (*Snapshot, IndexInfo) {
	t.Helper()
	start := time.Now()
	s, err := Walk(context.Background(), root, WalkOptions{Walkers: 8, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		t.Fatal(err)
	}
	return s, IndexInfo{Source: root, Host: "node-1", WalkStart: start, WalkDuration: time.Since(start), RootDev: st.Dev}
}

func TestIndexRoundTrip(t *testing.T) {
	root := awkwardTree(t)
	s, info := walkInfo(t, root)
	path := filepath.Join(t.TempDir(), "tree.index")
	wrote, err := WriteIndex(path, s, info)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != wrote.Size {
		t.Fatalf("index file: %v, size %d, WriteIndex said %d", err, fi.Size(), wrote.Size)
	}
	for _, alias := range []bool{true, false} {
		got, gi, err := readIndex(path, alias)
		if err != nil {
			t.Fatal(err)
		}
		sameSnapshot(t, s, got, true)
		var st unix.Stat_t
		unix.Stat(root, &st)
		want := IndexInfo{Version: IndexVersion, Source: root, Host: "node-1", WalkStart: info.WalkStart.Round(0),
			WalkDuration: info.WalkDuration, RootIno: st.Ino, RootDev: st.Dev, RootMtime: st.Mtim.Nano(),
			RootCtime: st.Ctim.Nano(), Stats: s.Stats(), Size: fi.Size()}
		if !gi.WalkStart.Equal(want.WalkStart) {
			t.Errorf("walk start %v, want %v", gi.WalkStart, want.WalkStart)
		}
		gi.WalkStart = want.WalkStart
		if gi != want {
			t.Errorf("info\n got %+v\nwant %+v", gi, want)
		}
	}
	// The awkward names came through as bytes.
	a, _ := s.Lookup(0, "a")
	if _, ok := s.Lookup(a, "\xff\xfe not utf-8"); !ok {
		t.Error("non-UTF-8 name lost")
	}
	// Rewriting in place leaves exactly one file: the temporary is renamed.
	if _, err := WriteIndex(path, s, info); err != nil {
		t.Fatal(err)
	}
	if ents := testutil.ReadDir(t, filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d files after a rewrite, want 1", len(ents))
	}
	// Writing where it cannot leaves nothing and says why.
	if _, err := WriteIndex(filepath.Join(t.TempDir(), "no/such/dir/x.index"), s, info); err == nil || !strings.Contains(err.Error(), "no/such/dir") {
		t.Errorf("write into a missing directory: %v", err)
	}
}

func TestIndexSynthetic(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 50_000
	}
	s := synthetic(t, n)
	var buf bytes.Buffer
	info, err := EncodeIndex(&buf, s, IndexInfo{Source: "/synthetic", WalkStart: time.Unix(1.7e9, 5)})
	if err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != info.Size {
		t.Fatalf("encoded %d bytes, info says %d", buf.Len(), info.Size)
	}
	got, gi, err := DecodeIndex(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sameSnapshot(t, s, got, false)
	if gi.Source != "/synthetic" || gi.Stats.Entries != int64(n) || gi.WalkStart.UnixNano() != 1.7e18+5 {
		t.Errorf("info %+v", gi)
	}
	t.Logf("%d entries: %d index bytes, %.1f per entry", n, buf.Len(), float64(buf.Len())/float64(n))
}

func encodeSmall(t *testing.T) ([]byte, *Snapshot) {
	t.Helper()
	s, info := walkInfo(t, awkwardTree(t))
	var buf bytes.Buffer
	if _, err := EncodeIndex(&buf, s, info); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s
}

// resum recomputes the trailer checksum after a deliberate edit.
func resum(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[len(b)-trailerSize:], crc32.Checksum(b[:len(b)-trailerSize], castagnoli))
	return b
}

func TestIndexRefused(t *testing.T) {
	good, _ := encodeSmall(t)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	cases := []struct {
		name string
		data []byte
		err  error
		msg  string
	}{
		{"empty", nil, ErrIndexEmpty, "empty file"},
		{"magic only", good[:8], ErrIndexTruncated, "shorter than any index"},
		{"half", good[:len(good)/2], ErrIndexTruncated, "header records"},
		{"last byte missing", good[:len(good)-1], ErrIndexTruncated, "header records"},
		{"appended", append(bytes.Clone(good), 0), ErrIndexCorrupt, "header records"},
		{"bit flip in a name", mod(func(b []byte) []byte { b[preambleSize+200] ^= 0x10; return b }), ErrIndexCorrupt, "checksum mismatch"},
		{"bit flip in a column", mod(func(b []byte) []byte { b[len(b)/2] ^= 1; return b }), ErrIndexCorrupt, "checksum mismatch"},
		{"bit flip in the checksum", mod(func(b []byte) []byte { b[len(b)-trailerSize] ^= 0x80; return b }), ErrIndexCorrupt, "checksum mismatch"},
		{"bit flip in the version", mod(func(b []byte) []byte { b[8] ^= 2; return b }), ErrIndexCorrupt, "checksum mismatch"},
		{"wrong version", mod(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[8:], 1); return resum(b) }), ErrIndexVersion, "unsupported format version 1"},
		{"wrong magic", mod(func(b []byte) []byte { copy(b, "CFSINDEY"); return b }), ErrIndexNotIndex, "not a cachefs snapshot index"},
		{"text file", []byte("sub-01/eeg.edf\nsub-02/eeg.edf\n"), ErrIndexNotIndex, "not a cachefs snapshot index"},
		{"valid checksum, bad child range", mod(func(b []byte) []byte {
			// kids is the third section; break kids[0].
			off := preambleSize + int(binary.LittleEndian.Uint32(b[12:]))
			for id := 1; id < secKids; id++ {
				off += sectionHdrLen + pad8(int(binary.LittleEndian.Uint64(b[off+8:]))*int(elemSize[id]))
			}
			binary.LittleEndian.PutUint32(b[off+sectionHdrLen:], 0)
			return resum(b)
		}), ErrIndexCorrupt, "bad child range"},
	}
	dir := t.TempDir()
	msgs := map[string]string{}
	for _, c := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.WriteFile(p, c.data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, _, err := ReadIndex(p)
		if s != nil || !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.msg) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: got %v, %v; want %v containing %q and the path", c.name, s != nil, err, c.err, c.msg)
			continue
		}
		// Without the path, which differs for every case.
		msgs[c.name] = strings.ReplaceAll(err.Error(), p, "")
		t.Logf("%s: %v", c.name, err)
	}
	// The kinds are told apart.
	for _, pair := range [][2]string{{"empty", "half"}, {"half", "bit flip in a column"}, {"bit flip in a column", "wrong version"}, {"wrong version", "wrong magic"}} {
		if msgs[pair[0]] == "" || msgs[pair[0]] == msgs[pair[1]] {
			t.Errorf("%s and %s read alike: %q", pair[0], pair[1], msgs[pair[0]])
		}
	}
	if _, _, err := ReadIndex(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := ReadIndex(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

// TestIndexEveryByte flips each byte of a small index in turn: every
// variant is refused, none panics.
func TestIndexEveryByte(t *testing.T) {
	good, _ := encodeSmall(t)
	b := bytes.Clone(good)
	for k := range b {
		b[k] ^= 0x5a
		if s, _, err := DecodeIndex(b); err == nil || s != nil {
			t.Fatalf("byte %d flipped: accepted", k)
		}
		b[k] ^= 0x5a
	}
	for k := 0; k < len(good); k += 7 {
		if _, _, err := DecodeIndex(good[:k]); err == nil {
			t.Fatalf("cut at %d: accepted", k)
		}
	}
}

// TestIndexNoPanic edits the body with the checksum recomputed, as a buggy
// writer would: the load either refuses or yields a snapshot whose
// accessors all stay in range.
func TestIndexNoPanic(t *testing.T) {
	good, _ := encodeSmall(t)
	r := rand.New(rand.NewSource(1))
	refused := 0
	for try := 0; try < 3000; try++ {
		b := bytes.Clone(good)
		// Anywhere past the preamble: the header's fields too.
		k := preambleSize + r.Intn(len(b)-trailerSize-preambleSize)
		b[k] ^= byte(1 << r.Intn(8))
		if try%3 == 0 {
			b[k] = byte(r.Intn(256))
		}
		s, _, err := DecodeIndex(resum(b))
		if err != nil {
			refused++
			continue
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("byte %d: accessor panicked: %v", k, p)
				}
			}()
			for i := uint32(0); int(i) < s.Len(); i++ {
				_ = s.Path(i)
				_ = s.Attr(i)
				_ = s.Target(i)
				lo, hi := s.Children(i)
				for c := lo; c < hi; c++ {
					s.Lookup(i, s.Name(c))
				}
			}
		}()
	}
	t.Logf("%d of 3000 edits refused by the structural checks", refused)
	// Both ways, or the test proves nothing: all refused leaves the
	// accessors unexercised; none refused, the checks.
	if refused == 0 || refused == 3000 {
		t.Errorf("%d of 3000 edits refused; want some accepted and some refused", refused)
	}
}

func TestDiff(t *testing.T) {
	root := mkTree(t)
	a, _ := walkInfo(t, root)
	same := Diff(a, a, 10)
	if !same.Same() {
		t.Fatalf("a snapshot differs from itself: %+v", same)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(root, "a/b/new.json"), []byte("{}"), 0o644)) // added
	must(os.RemoveAll(filepath.Join(root, "a/b/c")))                             // removed with its file
	must(os.WriteFile(filepath.Join(root, "big/f0007"), []byte("longer now"), 0o644))
	must(os.Chmod(filepath.Join(root, "big/f0009"), 0o600))
	// The new link is made before the old one goes, so it cannot reuse
	// the old inode number (ext4 reuses freed ones at once).
	must(os.Symlink("elsewhere", filepath.Join(root, "link.new")))
	must(os.Rename(filepath.Join(root, "link.new"), filepath.Join(root, "link")))
	must(os.Remove(filepath.Join(root, "fifo")))
	must(os.Mkdir(filepath.Join(root, "fifo"), 0o755)) // type change
	must(os.WriteFile(filepath.Join(root, "fifo/inside"), nil, 0o644))
	old := time.Unix(1e9, 0)
	must(os.Chtimes(filepath.Join(root, "big/f0011"), old, old))
	b, _ := walkInfo(t, root)

	d := Diff(a, b, 100)
	paths := func(es []DiffEntry) string {
		var out []string
		for _, e := range es {
			out = append(out, fmt.Sprintf("%s:%d:%s", e.Path, e.Entries, e.What))
		}
		return strings.Join(out, " ")
	}
	if got, want := paths(d.AddedPaths), "a/b/new.json:1:"; got != want {
		t.Errorf("added %q, want %q", got, want)
	}
	if got, want := paths(d.RemovedPaths), "a/b/c:2:"; got != want {
		t.Errorf("removed %q, want %q", got, want)
	}
	if got, want := paths(d.ChangedPaths), "big/f0007:1:size, mtime big/f0009:1:mode big/f0011:1:mtime fifo:1:type link:1:size, mtime, target, inode"; got != want {
		t.Errorf("changed %q, want %q", got, want)
	}
	if d.Added != 2 || d.Removed != 2 || d.Changed != 5 {
		t.Errorf("counts added %d removed %d changed %d, want 2 2 5", d.Added, d.Removed, d.Changed)
	}
	if d := Diff(a, b, 1); len(d.ChangedPaths) != 1 || d.Changed != 5 {
		t.Errorf("limit 1: %d listed of %d", len(d.ChangedPaths), d.Changed)
	}
	// And the reverse direction swaps added and removed.
	if r := Diff(b, a, 0); r.Added != d.Removed || r.Removed != d.Added || r.Changed != d.Changed || len(r.ChangedPaths) != 0 {
		t.Errorf("reverse: %+v", r)
	}
}

// BenchmarkIndexLoad measures what a node pays to load a 1,000,000-entry
// index: the time of ReadIndex from a file in the page cache, the live heap
// it leaves per entry, what it allocated on the way (the peak), the file's
// size per entry, and the time WriteIndex took to write it (fsync included). "alias" is the
// default (the arrays point into the read buffer); "copy" copies each
// column into its own exactly sized slice.
func BenchmarkIndexLoad(b *testing.B) {
	const n = 1_000_000
	path := filepath.Join(b.TempDir(), "synthetic.index")
	s := synthetic(b, n)
	wstart := time.Now()
	info, err := WriteIndex(path, s, IndexInfo{Source: "/synthetic", WalkStart: time.Now()})
	if err != nil {
		b.Fatal(err)
	}
	writeSecs := time.Since(wstart).Seconds()
	walkHeap := float64(s.SizeBytes()) / n
	s = nil
	for _, mode := range []struct {
		name  string
		alias bool
	}{{"alias", true}, {"copy", false}} {
		b.Run(mode.name, func(b *testing.B) {
			var secs, heap, alloc float64
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				start := time.Now()
				got, _, err := readIndex(path, mode.alias)
				secs += time.Since(start).Seconds()
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap += float64(after.HeapAlloc) - float64(before.HeapAlloc)
				alloc += float64(after.TotalAlloc) - float64(before.TotalAlloc)
				runtime.KeepAlive(got)
			}
			b.ReportMetric(secs/float64(b.N), "load-s")
			b.ReportMetric(heap/float64(b.N)/n, "heap-B/entry")
			b.ReportMetric(float64(info.Size)/n, "index-B/entry")
			b.ReportMetric(alloc/float64(b.N)/n, "allocated-B/entry")
			b.ReportMetric(walkHeap, "built-arrays-B/entry")
			b.ReportMetric(writeSecs, "write-s")
		})
	}
}
