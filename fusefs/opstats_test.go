package fusefs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

func TestBucketIsTheFirstBoundAtOrAbove(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, time.Microsecond, 1001, 4 * time.Microsecond, 4001,
		time.Millisecond, 300 * time.Millisecond, 4 * time.Second, time.Hour} {
		i := bucket(d)
		if i < numBuckets && d.Seconds() > LatencyBuckets[i]*(1+1e-9) {
			t.Errorf("%v in bucket %d (<= %gs)", d, i, LatencyBuckets[i])
		}
		if i > 0 && d.Seconds() <= LatencyBuckets[i-1] {
			t.Errorf("%v in bucket %d, fits the one below (<= %gs)", d, i, LatencyBuckets[i-1])
		}
	}
}

func TestSnapshotCountsOpsAndErrnos(t *testing.T) {
	var s OpStats
	for i := 0; i < sampleEvery+1; i++ {
		s.done(OpLookup, s.begin(OpLookup), fuse.OK)
	}
	s.done(OpLookup, s.begin(OpLookup), fuse.ENOENT)
	s.done(OpRead, s.begin(OpRead), fuse.EIO)
	s.done(OpRead, s.begin(OpRead), fuse.Status(5000))
	got := s.Snapshot()
	if len(got) != 2 || got[0].Op != OpLookup || got[1].Op != OpRead {
		t.Fatalf("snapshot %+v: want LOOKUP and READ only", got)
	}
	l, r := got[0], got[1]
	// The first request of each sampleEvery is timed.
	if l.Count != sampleEvery+2 || l.Timed != 2 || l.Buckets[numBuckets-1] != 2 || l.Errors[syscall.ENOENT] != 1 || len(l.Errors) != 1 {
		t.Errorf("LOOKUP %+v", l)
	}
	if r.Errors[syscall.EIO] != 1 || r.Errors[0] != 1 {
		t.Errorf("READ errors %v: want one EIO and one out of range", r.Errors)
	}
}

// BenchmarkOpStatsDone is what counting adds to a request, with the two
// cores answering requests of the same opcode, beside what timing every
// request would add (two clock reads).
func BenchmarkOpStatsDone(b *testing.B) {
	var s OpStats
	b.Run("counted", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.done(OpLookup, s.begin(OpLookup), fuse.OK)
			}
		})
	})
	b.Run("clock-per-request", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var d time.Duration
			for pb.Next() {
				d += time.Since(time.Now())
			}
			_ = d
		})
	})
}

// BenchmarkCountedLookup is a LOOKUP answered from the snapshot straight
// and through the counting wrapper, side by side.
func BenchmarkCountedLookup(b *testing.B) {
	t := newRawFS(wideTree(b, 1000, nil), nil, &Mount{})
	var s OpStats
	for name, fs := range map[string]fuse.RawFileSystem{"direct": t, "counted": s.wrap(t)} {
		b.Run(name, func(b *testing.B) {
			h := &fuse.InHeader{NodeId: 1}
			var out fuse.EntryOut
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fs.Lookup(nil, h, "f0500", &out)
				}
			})
		})
	}
}

// BenchmarkWalkCounted is a whole metadata walk through a fresh mount,
// with the request counters and without, alternated in one run: listing
// every directory and lstatting every entry (find -ls; the kernel learns
// most entries from READDIRPLUS), and lstatting every path by name with
// no listing (an import storm: a LOOKUP each, the cheapest request, where
// counting weighs most). It reports the walk's time per request reaching
// the daemon for both, and their ratio; the requests are those the
// counted mount counted (the same walk of the same tree sends the same
// requests either way).
func BenchmarkWalkCounted(b *testing.B) {
	requireFuse(b)
	s := forestTree(b, 50, 400)
	b.Run("list-lstat", func(b *testing.B) { benchWalkCounted(b, s, walkLstat) })
	b.Run("lstat-by-name", func(b *testing.B) { benchWalkCounted(b, s, lstatByName(s)) })
}

func benchWalkCounted(b *testing.B, s *snapshot.Snapshot, walk func(testing.TB, string)) {
	var ns [2]float64 // bare, counted
	var reqs float64
	ratios := make([]float64, 0, b.N)
	for i := 0; i < b.N; i++ {
		var took [2]time.Duration
		for k := range 2 {
			j := (i + k) % 2 // 0 bare, 1 counted; which goes first alternates
			b.StopTimer()
			m, mnt := mountOnce(b, Config{Snapshot: s, Content: pathContent{s}, Logger: zerolog.Nop(), uncounted: j == 0})
			b.StartTimer()
			start := time.Now()
			walk(b, mnt)
			took[j] = time.Since(start)
			b.StopTimer()
			for _, f := range m.Stats().Ops.Snapshot() {
				reqs += float64(f.Count) // nothing counted on the bare mount
			}
			unmountOnce(b, m, mnt)
			b.StartTimer()
		}
		ns[0] += float64(took[0])
		ns[1] += float64(took[1])
		ratios = append(ratios, float64(took[1])/float64(took[0]))
	}
	slices.Sort(ratios)
	b.ReportMetric(ns[0]/reqs, "bare-ns/req")
	b.ReportMetric(ns[1]/reqs, "counted-ns/req")
	// The median of the pairs' ratios: one walk slowed by other work on
	// the machine moves it least.
	b.ReportMetric(ratios[len(ratios)/2], "counted/bare")
	b.ReportMetric(reqs/float64(b.N), "req/walk")
}

func mountOnce(b *testing.B, cfg Config) (*Mount, string) {
	mnt := b.TempDir()
	m, err := New(mnt, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return m, mnt
}

func unmountOnce(b *testing.B, m *Mount, mnt string) {
	if err := m.Unmount(); err != nil {
		unix.Unmount(mnt, unix.MNT_DETACH)
		b.Fatalf("unmount: %v", err)
	}
	m.Wait()
}

// forestTree is dirs directories of files files each.
func forestTree(t testing.TB, dirs, files int) *snapshot.Snapshot {
	t.Helper()
	b := snapshot.NewBuilder()
	root := make([]snapshot.Entry, dirs)
	ino := uint64(2)
	for i := range root {
		d := b.NewDir()
		root[i] = snapshot.Entry{Name: fmt.Sprintf("d%03d", i), Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 2, Ino: ino}, Dir: d}
		ino++
		kids := make([]snapshot.Entry, files)
		for j := range kids {
			kids[j] = fileEntry(fmt.Sprintf("f%06d", j), ino, 0o644, 1)
			ino++
		}
		b.SetDir(d, kids)
	}
	b.SetDir(0, root)
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: uint32(2 + dirs), Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// walkLstat lists every directory below root and lstats every entry, as
// find -ls or os.walk with stat does.
func walkLstat(t testing.TB, root string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		return unix.Lstat(p, &st)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// lstatByName lstats every path of s below root by its name, listing
// nothing.
func lstatByName(s *snapshot.Snapshot) func(testing.TB, string) {
	paths := make([]string, 0, s.Len())
	for i := 1; i < s.Len(); i++ {
		paths = append(paths, s.Path(uint32(i)))
	}
	return func(t testing.TB, root string) {
		t.Helper()
		var st unix.Stat_t
		for _, p := range paths {
			if err := unix.Lstat(filepath.Join(root, p), &st); err != nil {
				t.Fatal(err)
			}
		}
	}
}
