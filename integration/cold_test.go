package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// coldStatus is the part of `cachefs status --json` these tests read.
type coldStatus struct {
	BytesServed int64 `json:"bytes_served"`
	Cache       struct {
		BytesFromSource int64 `json:"bytes_from_source"`
	} `json:"cache"`
	Prefetch *struct {
		Queued      int   `json:"queued"`
		Running     int   `json:"running"`
		Done        int64 `json:"done"`
		InFlight    int   `json:"in_flight_limit"`
		MaxInFlight int   `json:"max_in_flight"`
		Warm        *struct {
			Files, Done, Failed int64
			Listing, Stopped    bool
		} `json:"warm"`
	} `json:"prefetch"`
}

func (f *cacheFixture) status(t testing.TB, mnt string) coldStatus {
	t.Helper()
	r := f.e.run("status", "--json", mnt)
	if r.code != 0 {
		t.Fatalf("status exited %d: %s", r.code, r.stderr)
	}
	var s coldStatus
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v: %s", err, r.stdout)
	}
	return s
}

// waitWarmEnd polls status until --warm has nothing left; the deadline
// only catches a hang.
func (f *cacheFixture) waitWarmEnd(t testing.TB, mnt string) coldStatus {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		s := f.status(t, mnt)
		if s.Prefetch == nil || s.Prefetch.Warm == nil {
			t.Fatalf("status shows no warm progress: %+v", s)
		}
		w := s.Prefetch.Warm
		if !w.Listing && (w.Stopped || w.Done+w.Failed >= w.Files) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("warm never ended: %+v", *w)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func smallTree(files, size int) map[string]int {
	sizes := map[string]int{}
	for i := range files {
		sizes[fmt.Sprintf("d%d/f%04d", i%7, i)] = size + i%13
	}
	return sizes
}

// TestMountWarmStagesTheTree: --warm stages every file of the subtrees
// named, each byte read from the source once, without the job asking, and
// the job's reads afterwards cost the source nothing.
func TestMountWarmStagesTheTree(t *testing.T) {
	sizes := smallTree(300, 3000)
	sizes["other/big"] = 3 << 20
	f := newCacheFixture(t, sizes, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch", "off", "--warm", "d0", "--warm", "d1/", "--warm", "d2", "--warm", "d3", "--warm", "d4", "--warm", "d5", "--warm", "d6")
	s := f.waitWarmEnd(t, mnt)
	w := s.Prefetch.Warm
	var want int64
	for name, n := range sizes {
		if strings.HasPrefix(name, "d") {
			want += int64(n)
		}
	}
	if w.Files != 300 || w.Done != 300 || w.Stopped {
		t.Errorf("warm %+v, want 300 files done", *w)
	}
	before := f.sfs.Counts()
	if got := int64(before.BytesRead); got != want {
		t.Errorf("source read %d bytes to stage %d: amplification %.3f, want 1", got, want, float64(got)/float64(want))
	}
	for name, b := range f.files {
		if !strings.HasPrefix(name, "d") {
			continue
		}
		if got := readAll(t, filepath.Join(mnt, name)); string(got) != string(b) {
			t.Fatalf("%s: bytes differ from the source", name)
		}
	}
	after := f.sfs.Counts()
	if after.Opens != before.Opens || after.BytesRead != before.BytesRead {
		t.Errorf("reading staged files reached the source: %d opens, %d bytes", after.Opens-before.Opens, after.BytesRead-before.BytesRead)
	}
	if r := f.e.run("status", mnt); !strings.Contains(r.stdout, "300 of 300 files staged") {
		t.Errorf("status does not show the staging: %s", r.stdout)
	}
	f.e.unmount(mnt)
}

// TestListingPrefetchOnlyOfLargeDirectories: listing a directory queues
// its small files only when it has --prefetch-list-min entries (256 by
// default; here 3), and never under --prefetch dir, which waits for an
// open. The hook runs in OPENDIR, before the listing is answered, so what
// was queued is known as soon as the listing returns.
func TestListingPrefetchOnlyOfLargeDirectories(t *testing.T) {
	sizes := smallTree(21, 2000) // d3 has 3 files
	for _, tc := range []struct {
		flags []string
		list  bool
	}{
		{nil, false},
		{[]string{"--prefetch-list-min", "3"}, true},
		{[]string{"--prefetch", "dir", "--prefetch-list-min", "0"}, false},
	} {
		f := newCacheFixture(t, sizes, slowfs.Options{})
		mnt := filepath.Join(f.e.tmp, "mnt")
		f.mount(mnt, tc.flags...)
		if _, err := os.ReadDir(filepath.Join(mnt, "d3")); err != nil {
			t.Fatal(err)
		}
		p := f.status(t, mnt).Prefetch
		if p == nil {
			t.Fatalf("%v: status shows no prefetcher", tc.flags)
		}
		if heard := int64(p.Queued+p.Running) + p.Done; (heard > 0) != tc.list {
			t.Errorf("%v: %d files queued by a listing, want some: %v", tc.flags, heard, tc.list)
		}
		if tc.list {
			f.waitPrefetched(t, mnt, 3)
			var want int64
			for name, n := range sizes {
				if strings.HasPrefix(name, "d3/") {
					want += int64(n)
				}
			}
			if got := int64(f.sfs.Counts().BytesRead); got != want {
				t.Errorf("source read %d bytes for a listed directory of %d", got, want)
			}
		}
		f.e.unmount(mnt)
	}
}

// waitPrefetched polls status until n files were prefetched; the deadline
// only catches a hang.
func (f *cacheFixture) waitPrefetched(t testing.TB, mnt string, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p := f.status(t, mnt).Prefetch
		if p.Done >= n && p.Queued+p.Running == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch never finished: %+v", *p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMountWarmRefusesUnknownPaths: a typo in --warm fails the mount
// instead of warming nothing.
func TestMountWarmRefusesUnknownPaths(t *testing.T) {
	f := newCacheFixture(t, smallTree(5, 100), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	r := f.e.run("mount", f.slow, mnt, "--cache-dir", f.cacheDir, "--warm", "nope")
	if r.code == 0 {
		f.e.unmount(mnt)
		t.Fatal("mount with --warm of a missing path succeeded")
	}
	if isMounted(mnt) {
		t.Error("mounted anyway")
	}
	if r := f.e.run("mount", f.slow, mnt, "--cache-dir", f.cacheDir, "--warm", "../x"); r.code != 2 {
		t.Errorf("--warm ../x exited %d, want 2", r.code)
	}
}

// TestWarmNeverEvictsWhatTheJobRead: with a budget smaller than the tree,
// warming stops rather than evict a file the job has read.
func TestWarmNeverEvictsWhatTheJobRead(t *testing.T) {
	sizes := map[string]int{"job/read": 2 << 20}
	for i := range 8 {
		sizes[fmt.Sprintf("tree/f%d", i)] = 1 << 20
	}
	f := newCacheFixture(t, sizes, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch", "off", "--cache-size", "5MiB", "--warm", "tree")
	readAll(t, filepath.Join(mnt, "job/read"))
	s := f.waitWarmEnd(t, mnt)
	if !s.Prefetch.Warm.Stopped {
		t.Errorf("warm did not stop for want of room: %+v", *s.Prefetch.Warm)
	}
	before := f.sfs.Counts()
	if got := readAll(t, filepath.Join(mnt, "job/read")); string(got) != string(f.files["job/read"]) {
		t.Fatal("job/read: bytes differ from the source")
	}
	if after := f.sfs.Counts(); after.BytesRead != before.BytesRead {
		t.Errorf("the file the job read was evicted: %d bytes read again", after.BytesRead-before.BytesRead)
	}
	f.e.unmount(mnt)
}

// BenchmarkColdStage answers: how close does --warm come to the fastest
// stage-in the source allows? It stages a tree of small files (the cost
// of each is its latency: an open and a read) once by copying it with 128
// files in flight, the file list known up front (the floor), and once with
// `cachefs mount --warm .` (from the mount's return until status says
// done), side by side on fresh fixtures, and reports the ratio and the
// in-flight limit the controller settled on. Run with -benchtime=1x.
func BenchmarkColdStage(b *testing.B) {
	sizes := smallTree(3000, 4096)
	opts := slowfs.Options{MetaLatency: time.Millisecond, ReadLatency: 500 * time.Microsecond, Bandwidth: 200e6}
	for range b.N {
		f := newCacheFixtureTB(b, sizes, opts)
		dst := filepath.Join(f.e.tmp, "floor")
		t0 := time.Now()
		copyTree(b, f.slow, dst, sizes, 128)
		floor := time.Since(t0).Seconds()
		f.sfs.Unmount()

		f = newCacheFixtureTB(b, sizes, opts)
		mnt := filepath.Join(f.e.tmp, "mnt")
		f.mount(mnt, append([]string{"--prefetch", "off", "--warm", "."}, strings.Fields(os.Getenv("COLD_EXTRA"))...)...)
		t0 = time.Now()
		s := f.waitWarmEnd(b, mnt)
		warm := time.Since(t0).Seconds()
		f.e.unmount(mnt)
		b.ReportMetric(floor, "floor-s")
		b.ReportMetric(warm, "warm-s")
		b.ReportMetric(warm/floor, "warm/floor")
		b.ReportMetric(float64(s.Prefetch.InFlight), "in-flight")
	}
}

func copyTree(b testing.TB, src, dst string, sizes map[string]int, n int) {
	sem := make(chan struct{}, n)
	errs := make(chan error, len(sizes))
	for name := range sizes {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, name)), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for name := range sizes {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			data, err := os.ReadFile(filepath.Join(src, name))
			if err == nil {
				err = os.WriteFile(filepath.Join(dst, name), data, 0o644)
			}
			errs <- err
		}()
	}
	for range sizes {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
}
