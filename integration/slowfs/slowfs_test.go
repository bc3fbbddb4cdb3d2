package slowfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mounted records every mountpoint the tests create so TestMain can prove
// none survives the run, regardless of which test leaked it.
var (
	mountedMu sync.Mutex
	mounted   []string
)

func TestMain(m *testing.M) {
	// Without FUSE nothing here proves anything: fail, never pass empty.
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "slowfs: /dev/fuse unavailable:", err)
		os.Exit(1)
	}
	code := m.Run()
	mountedMu.Lock()
	leaked := stillMounted(mounted)
	mountedMu.Unlock()
	if len(leaked) > 0 {
		fmt.Fprintln(os.Stderr, "slowfs: mounts left behind:", leaked)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// stillMounted returns the paths from want that appear as mount points in
// /proc/self/mountinfo.
func stillMounted(want []string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return []string{"cannot read mountinfo: " + err.Error()}
	}
	defer f.Close()
	set := make(map[string]bool, len(want))
	for _, w := range want {
		set[w] = true
	}
	var found []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && set[unescapeMountinfo(fields[4])] {
			found = append(found, fields[4])
		}
	}
	return found
}

// unescapeMountinfo undoes the octal escaping the kernel applies to
// whitespace and backslashes in mountinfo paths.
func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

const smallContent = "hello, slow world\n"

// makeTree builds a small source tree: a file, a nested file, a symlink and
// an empty directory.
func makeTree(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a.txt"), []byte(smallContent), 0o644))
	must(t, os.MkdirAll(filepath.Join(src, "dir", "empty"), 0o755))
	must(t, os.WriteFile(filepath.Join(src, "dir", "b.txt"), []byte("bbb"), 0o644))
	must(t, os.Symlink("a.txt", filepath.Join(src, "link")))
	return src
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// mountT mounts src with opts and guarantees an unmount at test end, even
// when the test fails.
func mountT(t testing.TB, src string, opts Options) *FS {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "mnt")
	must(t, os.Mkdir(mnt, 0o755))
	mountedMu.Lock()
	mounted = append(mounted, mnt)
	mountedMu.Unlock()
	f, err := Mount(src, mnt, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := f.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
		}
	})
	return f
}

// waitFor polls cond, for counters the kernel updates asynchronously
// (RELEASE is sent after close(2) returns).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMountIsFreshAndMountpoint(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	if !filepath.IsAbs(f.Mountpoint()) {
		t.Errorf("Mountpoint %q not absolute", f.Mountpoint())
	}
	if got := stillMounted([]string{f.Mountpoint()}); len(got) != 1 {
		t.Fatalf("mountpoint not in mountinfo: %v", got)
	}
	if c := f.Counts(); c.Meta != 0 || c.Opens != 0 || c.Reads != 0 || len(c.Ops) != 0 {
		t.Errorf("counts after mount not zero: %+v", c)
	}
}

func TestReadOpsAreCountedAndFaithful(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	mnt := f.Mountpoint()

	st, err := os.Stat(filepath.Join(mnt, "a.txt"))
	must(t, err)
	if st.Size() != int64(len(smallContent)) {
		t.Errorf("size = %d, want %d", st.Size(), len(smallContent))
	}
	c := f.Counts()
	if c.Ops["lookup"]+c.Ops["getattr"]+c.Ops["statx"] == 0 || c.Meta == 0 {
		t.Errorf("stat not counted: %+v", c)
	}

	f.Reset()
	ents, err := os.ReadDir(mnt)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, ","), "a.txt,dir,link"; got != want {
		t.Errorf("readdir = %s, want %s", got, want)
	}
	c = f.Counts()
	if c.Ops["opendir"] == 0 || c.Ops["readdir"]+c.Ops["readdirplus"] == 0 {
		t.Errorf("readdir not counted: %+v", c)
	}

	f.Reset()
	target, err := os.Readlink(filepath.Join(mnt, "link"))
	must(t, err)
	if target != "a.txt" {
		t.Errorf("readlink = %q", target)
	}
	if c := f.Counts(); c.Ops["readlink"] == 0 {
		t.Errorf("readlink not counted: %+v", c)
	}

	f.Reset()
	data, err := os.ReadFile(filepath.Join(mnt, "dir", "b.txt"))
	must(t, err)
	if string(data) != "bbb" {
		t.Errorf("read = %q", data)
	}
	data, err = os.ReadFile(filepath.Join(mnt, "link"))
	must(t, err)
	if string(data) != smallContent {
		t.Errorf("read via symlink = %q", data)
	}
	waitFor(t, "release", func() bool { return f.Counts().Ops["release"] >= 2 })
	c = f.Counts()
	if c.Opens != 2 || c.Ops["open"] != 2 {
		t.Errorf("opens = %d, want 2: %+v", c.Opens, c)
	}
	if c.Reads == 0 || c.Reads != c.Ops["read"] {
		t.Errorf("reads = %d: %+v", c.Reads, c)
	}
	if want := uint64(3 + len(smallContent)); c.BytesRead != want {
		t.Errorf("BytesRead = %d, want %d", c.BytesRead, want)
	}

	f.Reset()
	var sfs syscall.Statfs_t
	must(t, syscall.Statfs(mnt, &sfs))
	must(t, syscall.Access(filepath.Join(mnt, "a.txt"), 4 /* R_OK */))
	if c := f.Counts(); c.Ops["statfs"] == 0 {
		t.Errorf("statfs not counted: %+v", c)
	}
}

func TestWriteOpsAreCountedAndReachSource(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	mnt := f.Mountpoint()

	must(t, os.WriteFile(filepath.Join(mnt, "new.txt"), []byte("new"), 0o644))
	must(t, os.Mkdir(filepath.Join(mnt, "newdir"), 0o755))
	must(t, os.Rename(filepath.Join(mnt, "new.txt"), filepath.Join(mnt, "newdir", "moved.txt")))
	must(t, os.Truncate(filepath.Join(mnt, "newdir", "moved.txt"), 2))
	must(t, os.Remove(filepath.Join(mnt, "a.txt")))

	got, err := os.ReadFile(filepath.Join(src, "newdir", "moved.txt"))
	must(t, err)
	if string(got) != "ne" {
		t.Errorf("source content = %q", got)
	}
	if _, err := os.Stat(filepath.Join(src, "a.txt")); !os.IsNotExist(err) {
		t.Errorf("a.txt still in source: %v", err)
	}
	c := f.Counts()
	for _, op := range []string{"create", "write", "mkdir", "rename", "setattr", "unlink"} {
		if c.Ops[op] == 0 {
			t.Errorf("%s not counted: %+v", op, c.Ops)
		}
	}
}

// newFileOnMount mounts a fresh tree and creates the file w on it, closed
// when the test ends.
func newFileOnMount(t *testing.T) (f *FS, fh *os.File, src string) {
	t.Helper()
	src = makeTree(t)
	f = mountT(t, src, Options{})
	fh, err := os.OpenFile(filepath.Join(f.Mountpoint(), "w"), os.O_CREATE|os.O_RDWR, 0o644)
	must(t, err)
	t.Cleanup(func() { fh.Close() })
	return f, fh, src
}

// TestFailWrites: while writes fail, write, fsync and fallocate get the
// errno and reads, creates and lookups go on; FailWrites(0) ends it.
func TestFailWrites(t *testing.T) {
	f, fh, _ := newFileOnMount(t)
	mnt := f.Mountpoint()
	f.FailWrites(syscall.EIO)
	if _, err := fh.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EIO) {
		t.Errorf("write while writes fail: %v, want EIO", err)
	}
	if err := fh.Sync(); !errors.Is(err, syscall.EIO) {
		t.Errorf("fsync while writes fail: %v, want EIO", err)
	}
	if err := unix.Fallocate(int(fh.Fd()), 0, 0, 4096); !errors.Is(err, syscall.EIO) {
		t.Errorf("fallocate while writes fail: %v, want EIO", err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "a.txt")); err != nil || string(b) != smallContent {
		t.Errorf("read while writes fail: %q %v", b, err)
	}
	g, err := os.Create(filepath.Join(mnt, "created"))
	if err != nil {
		t.Errorf("create while writes fail: %v", err)
	} else {
		g.Close()
	}
	f.FailWrites(0)
	if _, err := fh.WriteAt([]byte("x"), 0); err != nil {
		t.Errorf("write once writes work again: %v", err)
	}
}

// TestHolds: a held WRITE stores its first bytes and waits, a held UNLINK
// removes nothing; each fails with EIO once released, and only the first
// matching request is held.
func TestHolds(t *testing.T) {
	f, fh, src := newFileOnMount(t)
	mnt := f.Mountpoint()
	held, release := f.HoldWrite(func(n int) bool { return n == 6 }, 2)
	done := make(chan error, 1)
	go func() {
		_, err := fh.WriteAt([]byte("abcdef"), 0)
		done <- err
	}()
	waitHeld(t, held, "write")
	if b, err := os.ReadFile(filepath.Join(src, "w")); err != nil || string(b) != "ab" {
		t.Errorf("while held, the file holds %q (%v), want the first 2 bytes", b, err)
	}
	release()
	if err := <-done; !errors.Is(err, syscall.EIO) {
		t.Errorf("released write: %v, want EIO", err)
	}
	if _, err := fh.WriteAt([]byte("ghijkl"), 0); err != nil {
		t.Errorf("a second write of the size held: %v", err)
	}

	held, release = f.HoldUnlink(func(name string) bool { return name == "a.txt" })
	go func() { done <- os.Remove(filepath.Join(mnt, "a.txt")) }()
	waitHeld(t, held, "unlink")
	release()
	if err := <-done; !errors.Is(err, syscall.EIO) {
		t.Errorf("released unlink: %v, want EIO", err)
	}
	if _, err := os.Stat(filepath.Join(src, "a.txt")); err != nil {
		t.Errorf("a held unlink removed the file: %v", err)
	}
}

func waitHeld(t *testing.T, held <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatalf("the %s was never held", what)
	}
}

// statCost is the number of metadata requests one stat(2) of path costs.
func statCost(t *testing.T, f *FS, path string) uint64 {
	t.Helper()
	before := f.Counts().Meta
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return f.Counts().Meta - before
}

func TestNoCacheCountsEveryAccess(t *testing.T) {
	src := makeTree(t)
	const lat = 20 * time.Millisecond
	f := mountT(t, src, Options{MetaLatency: lat})
	p := filepath.Join(f.Mountpoint(), "dir", "b.txt")

	charged := f.Counts().Charged
	first := statCost(t, f, p)
	second := statCost(t, f, p)
	charged = f.Counts().Charged - charged
	if first == 0 || second == 0 || first+second < 2 {
		t.Errorf("stat costs = %d, %d; want every stat to reach the fixture", first, second)
	}
	if c := f.Counts(); c.Ops["lookup"]+c.Ops["getattr"]+c.Ops["statx"] < 2 {
		t.Errorf("want >= 2 lookup/getattr: %+v", c.Ops)
	}
	if want := time.Duration(first+second) * lat; charged != want {
		t.Errorf("two stats charged %v, want %v (%d requests at %v)", charged, want, first+second, lat)
	}

	missing := filepath.Join(f.Mountpoint(), "nope")
	if a, b := statCost(t, f, missing), statCost(t, f, missing); a == 0 || b == 0 {
		t.Errorf("negative lookups cached: costs %d, %d", a, b)
	}
}

func TestCacheTimeoutHidesRepeats(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{CacheTimeout: time.Hour})
	p := filepath.Join(f.Mountpoint(), "dir", "b.txt")

	if first := statCost(t, f, p); first == 0 {
		t.Errorf("first stat not counted")
	}
	if second := statCost(t, f, p); second != 0 {
		t.Errorf("second stat cost %d, want 0 with kernel caching: %+v", second, f.Counts().Ops)
	}
	missing := filepath.Join(f.Mountpoint(), "nope")
	if first := statCost(t, f, missing); first == 0 {
		t.Errorf("first negative lookup not counted")
	}
	if second := statCost(t, f, missing); second != 0 {
		t.Errorf("second negative lookup cost %d, want 0", second)
	}
}

func TestReset(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	_, err := os.ReadFile(filepath.Join(f.Mountpoint(), "a.txt"))
	must(t, err)
	if c := f.Counts(); c.Meta == 0 || c.Reads == 0 || c.BytesRead == 0 {
		t.Fatalf("nothing counted: %+v", c)
	}
	waitFor(t, "release", func() bool { return f.Counts().Ops["release"] > 0 })
	f.Reset()
	if c := f.Counts(); c.Meta != 0 || c.Opens != 0 || c.Reads != 0 || c.BytesRead != 0 || len(c.Ops) != 0 {
		t.Errorf("after Reset: %+v", c)
	}
}

func TestDisableReadDirPlus(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{DisableReadDirPlus: true})
	_, err := os.ReadDir(f.Mountpoint())
	must(t, err)
	c := f.Counts()
	if c.Ops["readdirplus"] != 0 || c.Ops["readdir"] == 0 {
		t.Errorf("want plain readdir only: %+v", c.Ops)
	}
}

func TestLatencies(t *testing.T) {
	src := makeTree(t)
	const open, read = 60 * time.Millisecond, 40 * time.Millisecond
	f := mountT(t, src, Options{OpenLatency: open, ReadLatency: read})
	p := filepath.Join(f.Mountpoint(), "a.txt")
	_, err := os.Stat(p) // warm nothing (no cache), but keep lookups out of the timing
	must(t, err)

	before := f.Counts()
	fh, err := os.Open(p)
	must(t, err)
	defer fh.Close()
	c := f.Counts()
	if opens, d := c.Opens-before.Opens, c.Charged-before.Charged; opens != 1 || d != open {
		t.Errorf("open: %d opens charged %v, want 1 and %v", opens, d, open)
	}
	before = c
	buf := make([]byte, 100)
	n, err := fh.Read(buf)
	must(t, err)
	c = f.Counts()
	if reads, d := c.Reads-before.Reads, c.Charged-before.Charged; reads == 0 || d != time.Duration(reads)*read {
		t.Errorf("read: %d reads charged %v, want %v each", reads, d, read)
	}
	if string(buf[:n]) != smallContent {
		t.Errorf("read %q", buf[:n])
	}
}

func TestBandwidthCap(t *testing.T) {
	src := t.TempDir()
	const size = 1 << 20
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	must(t, os.WriteFile(filepath.Join(src, "big"), want, 0o644))
	f := mountT(t, src, Options{Bandwidth: 4 << 20})

	got, err := os.ReadFile(filepath.Join(f.Mountpoint(), "big"))
	must(t, err)
	if !bytes.Equal(got, want) {
		t.Fatalf("content differs (len %d)", len(got))
	}
	// 1 MiB at 4 MiB/s is 250ms of the link.
	if c := f.Counts(); c.BytesRead != size || c.Charged != 250*time.Millisecond {
		t.Errorf("read %d bytes charged %v, want %d and 250ms", c.BytesRead, c.Charged, size)
	}
}

// Counters read while requests are in flight must be race-free (-race
// proves it); how long the shared link makes readers wait is
// BenchmarkFixtureTiming's to measure.
func TestCountsWhileReading(t *testing.T) {
	src := t.TempDir()
	const size = 256 << 10
	for i := range 4 {
		must(t, os.WriteFile(filepath.Join(src, fmt.Sprint(i)), make([]byte, size), 0o644))
	}
	f := mountT(t, src, Options{Bandwidth: 4 << 20})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			b, err := os.ReadFile(filepath.Join(f.Mountpoint(), fmt.Sprint(i)))
			if err == nil && len(b) != size {
				err = fmt.Errorf("file %d: read %d bytes", i, len(b))
			}
			errs <- err
		})
	}
	for range 10 {
		_ = f.Counts()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	if c := f.Counts(); c.BytesRead != 4*size || c.Charged != 250*time.Millisecond {
		t.Errorf("read %d bytes charged %v, want %d and 250ms", c.BytesRead, c.Charged, 4*size)
	}
}

// BenchmarkFixtureTiming reports how long requests really waited against
// what the fixture charged (wait/charged, at least 1 when the fixture
// waits as it says): a latency, one reader under the bandwidth cap, and
// four readers sharing it (per-reader budgets would report about 0.25).
func BenchmarkFixtureTiming(b *testing.B) {
	src := b.TempDir()
	const size = 256 << 10
	for i := range 4 {
		must(b, os.WriteFile(filepath.Join(src, fmt.Sprint(i)), make([]byte, size), 0o644))
	}
	for _, c := range []struct {
		name    string
		opts    Options
		readers int
	}{
		{"latency", Options{OpenLatency: 20 * time.Millisecond, ReadLatency: 20 * time.Millisecond}, 1},
		{"bandwidth", Options{Bandwidth: 4 << 20}, 1},
		{"shared", Options{Bandwidth: 4 << 20}, 4},
	} {
		b.Run(c.name, func(b *testing.B) {
			f := mountT(b, src, c.opts)
			for b.Loop() {
				f.Reset()
				start := time.Now()
				var wg sync.WaitGroup
				for i := range c.readers {
					// Each open drops the kernel's cached pages (the
					// fixture does not keep them), so every run reads
					// through the fixture.
					wg.Go(func() { os.ReadFile(filepath.Join(f.Mountpoint(), fmt.Sprint(i))) })
				}
				wg.Wait()
				b.ReportMetric(float64(time.Since(start))/float64(f.Counts().Charged), "wait/charged")
			}
		})
	}
}

func TestUnmountIdempotent(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	must(t, f.Unmount())
	must(t, f.Unmount())
	if got := stillMounted([]string{f.Mountpoint()}); len(got) != 0 {
		t.Errorf("still mounted: %v", got)
	}
	// The mountpoint is a plain directory again.
	if ents, err := os.ReadDir(f.Mountpoint()); err != nil || len(ents) != 0 {
		t.Errorf("mountpoint after unmount: %v, %v", ents, err)
	}
}

func TestUnmountBusyFallsBackToLazy(t *testing.T) {
	src := makeTree(t)
	f := mountT(t, src, Options{})
	fh, err := os.Open(filepath.Join(f.Mountpoint(), "a.txt"))
	must(t, err)
	defer fh.Close()

	done := make(chan error, 1)
	go func() { done <- f.Unmount() }()
	// Once the lazy detach happened the path is gone from mountinfo, yet
	// the open file keeps the connection (and the server) alive.
	waitFor(t, "lazy detach", func() bool { return len(stillMounted([]string{f.Mountpoint()})) == 0 })
	select {
	case err := <-done:
		t.Fatalf("Unmount returned %v while a file was still open", err)
	default:
	}
	buf := make([]byte, 5)
	if _, err := fh.Read(buf); err != nil || string(buf) != "hello" {
		t.Errorf("read from detached mount: %q, %v", buf, err)
	}
	fh.Close()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(unmountWait + time.Second):
		t.Fatal("Unmount did not return after the last user closed")
	}
	must(t, f.Unmount())
}
