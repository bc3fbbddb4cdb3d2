package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

func mkTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755))
	must(os.MkdirAll(filepath.Join(root, "empty"), 0o700))
	must(os.WriteFile(filepath.Join(root, "a/one.txt"), []byte("hello"), 0o644))
	must(os.WriteFile(filepath.Join(root, "a/b/c/deep"), []byte("deep!!"), 0o600))
	must(os.Symlink("../a/one.txt", filepath.Join(root, "empty/../link")))
	must(os.Link(filepath.Join(root, "a/one.txt"), filepath.Join(root, "hard")))
	must(syscall.Mkfifo(filepath.Join(root, "fifo"), 0o644))
	big := filepath.Join(root, "big")
	must(os.Mkdir(big, 0o755))
	for i := 0; i < 1000; i++ {
		must(os.WriteFile(filepath.Join(big, fmt.Sprintf("f%04d", i)), []byte(strings.Repeat("x", i)), 0o644))
	}
	return root
}

func TestWalkMatchesSource(t *testing.T) {
	root := mkTree(t)
	s, err := Walk(context.Background(), root, WalkOptions{Walkers: 8, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	err = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		idx := uint32(0)
		if rel != "." {
			for _, part := range strings.Split(rel, "/") {
				var ok bool
				idx, ok = s.Lookup(idx, part)
				if !ok {
					t.Fatalf("%s: not in snapshot", rel)
				}
			}
			if got := s.Path(idx); got != rel {
				t.Errorf("Path(%d) = %q, want %q", idx, got, rel)
			}
		}
		st := fi.Sys().(*syscall.Stat_t)
		a := s.Attr(idx)
		if a.Mode != st.Mode || a.Ino != st.Ino || a.Size != st.Size || a.Mtime != st.Mtim.Nano() || a.Nlink != uint32(st.Nlink) || a.Uid != st.Uid {
			t.Errorf("%s: attr %+v, stat %+v", rel, a, st)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			want, _ := os.Readlink(p)
			if got := s.Target(idx); got != want {
				t.Errorf("%s: target %q want %q", rel, got, want)
			}
		}
		if fi.IsDir() {
			des, _ := os.ReadDir(p)
			var want []string
			for _, de := range des {
				want = append(want, de.Name())
			}
			sort.Strings(want)
			var got []string
			lo, hi := s.Children(idx)
			for c := lo; c < hi; c++ {
				got = append(got, s.Name(c))
				if s.Parent(c) != idx {
					t.Errorf("Parent(%d)=%d want %d", c, s.Parent(c), idx)
				}
			}
			if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
				t.Errorf("%s: children %q want %q", rel, got, want)
			}
		}
		seen++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int(s.Stats().Entries) != seen || s.Len() != seen {
		t.Errorf("entries %d (len %d), walked %d", s.Stats().Entries, s.Len(), seen)
	}
	if _, ok := s.Lookup(0, "nope"); ok {
		t.Error("lookup of a missing name succeeded")
	}
	if s.Stats().Errors != 0 {
		t.Errorf("errors = %d", s.Stats().Errors)
	}
}

func TestWalkErrors(t *testing.T) {
	if _, err := Walk(context.Background(), "/nonexistent/x", WalkOptions{}); err == nil {
		t.Fatal("missing source accepted")
	}
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o644)
	if _, err := Walk(context.Background(), f, WalkOptions{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file as source: %v", err)
	}
	root := mkTree(t)
	os.Chmod(filepath.Join(root, "empty"), 0o755)
	os.Chmod(filepath.Join(root, "a"), 0)
	defer os.Chmod(filepath.Join(root, "a"), 0o755)
	var s *Snapshot
	var err error
	// Root reads everything: the walk runs as another user for a real
	// permission failure.
	asOtherUser(t, root, func() { s, err = Walk(context.Background(), root, WalkOptions{}) })
	if err != nil {
		t.Fatal(err)
	}
	if s.Stats().Errors != 1 {
		t.Errorf("unreadable directories counted: %d, want 1", s.Stats().Errors)
	}
}

// asOtherUser runs f with the effective uid of nobody when the test runs
// as root (the saved uid stays 0, so root comes back after), and makes the
// directories above root traversable for it (t.TempDir makes them 0700).
func asOtherUser(t *testing.T, root string, f func()) {
	t.Helper()
	if os.Geteuid() != 0 {
		f()
		return
	}
	for d := root; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const nobody = 65534
	if err := syscall.Setresuid(-1, nobody, -1); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := syscall.Setresuid(-1, 0, -1); err != nil {
			panic(err) // the rest of the package would run unprivileged
		}
	}()
	f()
}

func TestWalkCancel(t *testing.T) {
	root := mkTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Walk(ctx, root, WalkOptions{Walkers: 4}); err == nil {
		t.Fatal("cancelled walk succeeded")
	}
}

// synthetic builds a BIDS-shaped snapshot of about n entries without touching
// a disk: directories of 50 files with realistic name lengths.
func synthetic(tb testing.TB, n int) *Snapshot {
	b := NewBuilder()
	dirAttr := Attr{Mode: ModeDir | 0o755, Nlink: 2, Size: 4096, Uid: 1000, Gid: 1000}
	var root []Entry
	made := 1
	for d := 0; made < n; d++ {
		id := b.NewDir()
		a := dirAttr
		a.Ino = uint64(made + 1)
		root = append(root, Entry{Name: fmt.Sprintf("sub-%05d", d), Attr: a, Dir: id})
		made++
		var es []Entry
		for f := 0; f < 50 && made < n; f++ {
			fa := Attr{Mode: ModeReg | 0o644, Nlink: 1, Size: 300 << 10, Uid: 1000, Gid: 1000, Mtime: 1.7e18, Ctime: 1.7e18, Atime: 1.7e18, Ino: uint64(made + 1)}
			es = append(es, Entry{Name: fmt.Sprintf("sub-%05d_task-rest_run-%02d_eeg.edf", d, f), Attr: fa, Dir: NoDir})
			made++
		}
		b.SetDir(id, es)
	}
	b.SetDir(0, root)
	s, err := b.Build(dirAttr)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestBuildSynthetic(t *testing.T) {
	s := synthetic(t, 10_000)
	if s.Len() != 10_000 {
		t.Fatalf("len %d", s.Len())
	}
	c, ok := s.Lookup(0, "sub-00003")
	if !ok {
		t.Fatal("dir missing")
	}
	f, ok := s.Lookup(c, "sub-00003_task-rest_run-07_eeg.edf")
	if !ok || s.Path(f) != "sub-00003/sub-00003_task-rest_run-07_eeg.edf" {
		t.Fatalf("file lookup: %v %q", ok, s.Path(f))
	}
}

// BenchmarkSnapshotMemory reports the resident bytes per entry of a
// 1,000,000-entry snapshot: the heap the snapshot keeps after a GC, which is
// what a mount of that tree pays for its metadata.
func BenchmarkSnapshotMemory(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := synthetic(b, n)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/entry")
		b.ReportMetric(float64(s.SizeBytes())/n, "arrays-B/entry")
		runtime.KeepAlive(s)
	}
}

func BenchmarkLookup(b *testing.B) {
	s := synthetic(b, 1_000_000)
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("sub-%05d", i*19)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := s.Lookup(0, names[i%len(names)]); !ok {
			b.Fatal("missing")
		}
	}
}
