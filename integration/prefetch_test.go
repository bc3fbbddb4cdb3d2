package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// statusOf runs `cachefs status --json MOUNTPOINT` and decodes it.
func statusOf(t *testing.T, e *env, mnt string) map[string]any {
	t.Helper()
	r := e.run("status", "--json", mnt)
	if r.code != 0 {
		t.Fatalf("status: %d %s", r.code, r.stderr)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("status --json does not parse: %v\n%s", err, r.stdout)
	}
	return m
}

// num reads a number from status --json by its dotted path, failing the
// test when the key is missing or not a number: a renamed key must not
// read as 0.
func num(t testing.TB, m map[string]any, path string) float64 {
	t.Helper()
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("status has no %s: %v", path, m)
		}
		if v, ok = mm[k]; !ok {
			t.Fatalf("status has no %s: %v", path, m)
		}
	}
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("status %s is %v, not a number", path, v)
	}
	return f
}

// waitPrefetch polls status until the prefetch queue is empty and idle.
func waitPrefetch(t *testing.T, e *env, mnt string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		m := statusOf(t, e, mnt)
		if num(t, m, "prefetch.queued") == 0 && num(t, m, "prefetch.running") == 0 {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch never finished: %v", m["prefetch"])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func fiftyFiles(n, size int) map[string]int {
	sizes := map[string]int{}
	for i := 0; i < n; i++ {
		sizes[fmt.Sprintf("sub-01/eeg/run-%02d_eeg.bdf", i)] = size
	}
	return sizes
}

func TestPrefetchWarmsTheDirectory(t *testing.T) {
	f := newCacheFixture(t, fiftyFiles(50, 100<<10), slowfs.Options{ReadLatency: 500 * time.Microsecond})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt)
	first := "sub-01/eeg/run-20_eeg.bdf"
	if !bytes.Equal(readAll(t, filepath.Join(mnt, first)), f.files[first]) {
		t.Fatal("first file differs")
	}
	st := waitPrefetch(t, f.e, mnt)
	if done := num(t, st, "prefetch.done"); done != 49 {
		t.Errorf("prefetch did %v files, want the other 49", done)
	}
	// The status counters agree with what the source served.
	if got, want := num(t, st, "cache.bytes_from_source"), float64(f.sfs.Counts().BytesRead); got != want {
		t.Errorf("status says %v bytes from the source, the fixture served %v", got, want)
	}
	f.sfs.Reset()
	f.readAllEqual(t, mnt, "through the mount")
	if c := f.sfs.Counts(); c.BytesRead != 0 {
		t.Errorf("after prefetch, reading the directory pulled %d bytes from the source", c.BytesRead)
	}
	r := f.e.unmount(mnt)
	if !strings.Contains(r.stdout, "prefetched 49 files") {
		t.Errorf("unmount figures: %q", r.stdout)
	}
}

func TestPrefetchOff(t *testing.T) {
	f := newCacheFixture(t, fiftyFiles(5, 10<<10), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch", "off")
	readAll(t, filepath.Join(mnt, "sub-01/eeg/run-00_eeg.bdf"))
	st := statusOf(t, f.e, mnt)
	if _, ok := st["prefetch"]; ok {
		t.Errorf("prefetch reported with --prefetch off: %v", st["prefetch"])
	}
	if got := f.sfs.Counts().BytesRead; got != 10<<10 {
		t.Errorf("source served %d bytes for one 10 KiB file", got)
	}
	f.e.unmount(mnt)
}

func TestPrefetchRespectsCacheSize(t *testing.T) {
	f := newCacheFixture(t, fiftyFiles(50, 256<<10), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--cache-size", "4MiB", "--block-size", "256KiB")
	readAll(t, filepath.Join(mnt, "sub-01/eeg/run-00_eeg.bdf"))
	st := waitPrefetch(t, f.e, mnt)
	if u := num(t, st, "cache.usage"); u > 4<<20 {
		t.Errorf("cache usage %v over a 4 MiB budget", u)
	}
	if n := cacheBytes(t, f.cacheDir); n > 4<<20+64<<10 {
		t.Errorf("cache dir holds %d bytes", n)
	}
	if num(t, st, "prefetch.stopped") < 1 {
		t.Errorf("prefetch did not stop at the budget: %v", st["prefetch"])
	}
	// The file the job read is still cached: prefetch never evicted it.
	f.sfs.Reset()
	readAll(t, filepath.Join(mnt, "sub-01/eeg/run-00_eeg.bdf"))
	dropCaches(t)
	readAll(t, filepath.Join(mnt, "sub-01/eeg/run-00_eeg.bdf"))
	if got := f.sfs.Counts().BytesRead; got != 0 {
		t.Errorf("prefetch evicted the file the job read: %d bytes refetched", got)
	}
	f.e.unmount(mnt)
}

func TestWarmSubtree(t *testing.T) {
	sizes := fiftyFiles(10, 64<<10)
	for i := 0; i < 5; i++ {
		sizes[fmt.Sprintf("other/x%d", i)] = 64 << 10
	}
	f := newCacheFixture(t, sizes, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch", "off")
	r := f.e.run("warm", mnt, filepath.Join(mnt, "sub-01"))
	if r.code != 0 || !strings.Contains(r.stdout, "10 of 10 files cached") {
		t.Fatalf("warm: %d %q %q", r.code, r.stdout, r.stderr)
	}
	f.sfs.Reset()
	for name, b := range f.files {
		if strings.HasPrefix(name, "sub-01/") && !bytes.Equal(readAll(t, filepath.Join(mnt, name)), b) {
			t.Errorf("%s differs", name)
		}
	}
	if got := f.sfs.Counts().BytesRead; got != 0 {
		t.Errorf("after warm, the subtree pulled %d bytes from the source", got)
	}
	readAll(t, filepath.Join(mnt, "other/x0"))
	if got := f.sfs.Counts().BytesRead; got != 64<<10 {
		t.Errorf("a file outside the warmed subtree: %d bytes from the source, want 64 KiB", got)
	}
	if r := f.e.run("warm", mnt, "no/such/dir"); r.code == 0 || !strings.Contains(r.stderr, "not in the mount") {
		t.Errorf("warm of a missing path: %d %q", r.code, r.stderr)
	}
	f.e.unmount(mnt)
	// Warm of everything into a budget too small fails, saying so.
	f.mount(mnt, "--prefetch", "off", "--cache-size", "256KiB", "--block-size", "64KiB")
	if r := f.e.run("warm", mnt); r.code != 9 {
		t.Errorf("warm beyond the budget: exit %d %q %q, want 9", r.code, r.stdout, r.stderr)
	}
	f.e.unmount(mnt)
}

func TestStatusAllMounts(t *testing.T) {
	e := newEnv(t)
	var mnts []string
	for i := 0; i < 2; i++ {
		src := filepath.Join(e.tmp, fmt.Sprintf("src%d", i))
		os.MkdirAll(src, 0o755)
		mnt := filepath.Join(e.tmp, fmt.Sprintf("mnt%d", i))
		e.mount(src, mnt)
		mnts = append(mnts, mnt)
	}
	r := e.run("status", "--json")
	var all []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &all); err != nil {
		t.Fatalf("status --json of all mounts: %v %q", err, r.stdout)
	}
	// Root's records are machine-wide: other tests' mounts may be listed
	// too, so only this test's are counted.
	mine := 0
	for _, m := range all {
		if mp, _ := m["mountpoint"].(string); mp == mnts[0] || mp == mnts[1] {
			mine++
		}
	}
	if mine != 2 {
		t.Fatalf("status --json lists %d of this test's 2 mounts: %q", mine, r.stdout)
	}
	r = e.run("status")
	for _, m := range mnts {
		if !strings.Contains(r.stdout, m) {
			t.Errorf("status table lacks %s: %q", m, r.stdout)
		}
	}
	for _, m := range mnts {
		e.unmount(m)
	}
	if r := e.run("status", mnts[0]); r.code != 7 {
		t.Errorf("status of an unmounted path: %d", r.code)
	}
}
