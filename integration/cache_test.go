package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// cacheFixture is a source of random files behind the slow-source fixture,
// so tests can count the bytes cachefs pulls from it.
type cacheFixture struct {
	e        *env
	base     string // real files
	slow     string // the fixture's mountpoint: cachefs's source
	sfs      *slowfs.FS
	cacheDir string
	files    map[string][]byte
}

// sizedFiles names n files of size bytes each, after the fmt pattern
// given the file's index.
func sizedFiles(n int, pattern string, size int) map[string]int {
	sizes := make(map[string]int, n)
	for i := range n {
		sizes[fmt.Sprintf(pattern, i)] = size
	}
	return sizes
}

func newCacheFixture(t *testing.T, sizes map[string]int, opts slowfs.Options) *cacheFixture {
	return newCacheFixtureTB(t, sizes, opts)
}

func newCacheFixtureTB(t testing.TB, sizes map[string]int, opts slowfs.Options) *cacheFixture {
	e := &env{t: t, tmp: t.TempDir()}
	f := &cacheFixture{e: e, base: filepath.Join(e.tmp, "base"), slow: filepath.Join(e.tmp, "slow"),
		cacheDir: filepath.Join(e.tmp, "cache"), files: map[string][]byte{}}
	os.MkdirAll(f.base, 0o755)
	os.MkdirAll(f.slow, 0o755)
	r := rand.New(rand.NewSource(42))
	for name, n := range sizes {
		b := make([]byte, n)
		r.Read(b)
		p := filepath.Join(f.base, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		f.files[name] = b
	}
	f.sfs = mountSlow(t, f.base, f.slow, opts)
	return f
}

func (f *cacheFixture) mount(mnt string, extra ...string) int {
	pid, _ := f.e.mount(f.slow, mnt, append([]string{"--cache-dir", f.cacheDir}, extra...)...)
	return pid
}

// readAllEqual reads every fixture file whole through mnt and reports
// those that differ from the source, saying when.
func (f *cacheFixture) readAllEqual(t *testing.T, mnt, when string) {
	t.Helper()
	for name, b := range f.files {
		if !bytes.Equal(readAll(t, filepath.Join(mnt, name)), b) {
			t.Errorf("%s differs %s", name, when)
		}
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// dropCaches forgets page-cache copies so reads reach the mount again.
func dropCaches(t *testing.T) {
	t.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200); err != nil {
		t.Fatalf("dropping the page cache (needs root): %v", err)
	}
}

func TestCacheBytesAndReuse(t *testing.T) {
	const bs = 64 << 10
	f := newCacheFixture(t, map[string]int{"big": 3*bs*10 + 777, "small": 100, "d/exact": 2 * bs, "empty": 0}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--block-size", "64KiB")

	// Unaligned ranges across block boundaries and the last partial block.
	fh, err := os.Open(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	want := f.files["big"]
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 200; i++ {
		off := r.Int63n(int64(len(want)))
		n := 1 + r.Intn(3*bs)
		p := make([]byte, n)
		got, err := fh.ReadAt(p, off)
		if err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !bytes.Equal(p[:got], want[off:min(off+int64(n), int64(len(want)))]) {
			t.Fatalf("range %d@%d differs", n, off)
		}
	}
	tail := make([]byte, 1000)
	n, _ := fh.ReadAt(tail, int64(len(want)-500))
	if n != 500 || !bytes.Equal(tail[:n], want[len(want)-500:]) {
		t.Fatalf("last partial block: %d bytes", n)
	}
	fh.Close()
	f.readAllEqual(t, mnt, "through the mount")
	cold := f.sfs.Counts().BytesRead
	var total int
	for _, b := range f.files {
		total += len(b)
	}
	if cold > uint64(float64(total)*1.05) {
		t.Errorf("cold reads pulled %d bytes from the source for %d bytes of files", cold, total)
	}

	// A second read, even with the page cache dropped, pulls nothing.
	f.sfs.Reset()
	dropCaches(t)
	f.readAllEqual(t, mnt, "on the second read")
	if c := f.sfs.Counts(); c.BytesRead != 0 || c.Opens != 0 {
		t.Errorf("second read reached the source: %v", c.Ops)
	}
	f.e.unmount(mnt)

	// Nor does a read after remount, here with opens through the daemon so
	// that complete files are passed through.
	f.mount(mnt, "--block-size", "64KiB", "--passthrough=on")
	f.sfs.Reset()
	f.readAllEqual(t, mnt, "after remount")
	if c := f.sfs.Counts(); c.BytesRead != 0 {
		t.Errorf("read after remount pulled %d bytes from the source", c.BytesRead)
	}
	r2 := f.e.unmount(mnt)
	// Passthrough: every complete file was handed to the kernel, so the
	// daemon itself served nothing.
	if !strings.Contains(r2.stdout, "served 0 B") || summaryCount(t, r2.stdout, "passthrough opens") == 0 {
		t.Errorf("expected passthrough to serve the remounted reads: %q", r2.stdout)
	}
}

func TestHeaderReadFetchesOneBlock(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"rec.bdf": 64 << 20}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt)
	fh, err := os.Open(filepath.Join(mnt, "rec.bdf"))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096)
	if _, err := io.ReadFull(fh, p); err != nil || !bytes.Equal(p, f.files["rec.bdf"][:4096]) {
		t.Fatalf("header: %v", err)
	}
	fh.Close()
	if got := f.sfs.Counts().BytesRead; got != 1<<20 {
		t.Errorf("a 4 KiB header read pulled %d bytes from the source, want one block (1 MiB)", got)
	}
	f.e.unmount(mnt)
}

func TestKill9MidFetchThenRemount(t *testing.T) {
	const size = 24 << 20
	f := newCacheFixture(t, map[string]int{"large": size}, slowfs.Options{Bandwidth: 16 << 20})
	mnt := filepath.Join(f.e.tmp, "mnt")
	pid := f.mount(mnt)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Killed mid-read: it fails, and only its ending matters.
		_ = exec.CommandContext(ctx, "cat", filepath.Join(mnt, "large")).Run()
	}()
	// Half the file, well beyond what can be in flight at once, so that
	// a remount that kept nothing would be told from one that kept the
	// blocks completed before the kill.
	deadline := time.Now().Add(30 * time.Second)
	for f.sfs.Counts().BytesRead < size/2 {
		if time.Now().After(deadline) {
			t.Fatal("the fetch never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, hangGuard) {
		t.Fatal("the daemon outlived SIGKILL")
	}
	<-done // cat ends with the mount's connection, or at ctx's deadline
	if ctx.Err() != nil {
		t.Fatal("a read of a killed daemon's mount hung")
	}
	before := f.sfs.Counts().BytesRead
	if before >= size {
		t.Fatalf("the whole file was fetched before the kill: nothing was killed mid-fetch")
	}

	f.mount(mnt) // cleans the dead mount and takes the cache dir again
	f.sfs.Reset()
	if !bytes.Equal(readAll(t, filepath.Join(mnt, "large")), f.files["large"]) {
		t.Fatal("bytes differ after kill -9 and remount")
	}
	again := f.sfs.Counts().BytesRead
	t.Logf("before kill: %d bytes fetched; after remount: %d", before, again)
	// Only blocks in flight at the kill are fetched twice: the demand
	// block and the default read-ahead of 4, 1 MiB each.
	const inFlight = 5 << 20
	if again >= size {
		t.Errorf("remount fetched all %d bytes again: nothing fetched before the kill was kept", again)
	}
	if again+before > size+inFlight {
		t.Errorf("remount refetched %d bytes after %d were fetched of %d: more than the %d bytes in flight", again, before, size, inFlight)
	}
	f.e.unmount(mnt)
}

func TestChangedSourceFailsUncachedBlocks(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"rec": 4 << 20}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--read-ahead", "0")
	fh, _ := os.Open(filepath.Join(mnt, "rec"))
	head := make([]byte, 4096)
	fh.ReadAt(head, 0)
	fh.Close()

	// Rewrite the source after the snapshot: same size, new bytes and mtime.
	newBytes := bytes.Repeat([]byte("NEW!"), (4<<20)/4)
	if err := os.WriteFile(filepath.Join(f.base, "rec"), newBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(filepath.Join(mnt, "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	p := make([]byte, 4096)
	if _, err := fh.ReadAt(p, 0); err != nil || !bytes.Equal(p, f.files["rec"][:4096]) {
		t.Errorf("cached block of the snapshot's version: %v", err)
	}
	_, err = fh.ReadAt(p, 3<<20)
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("uncached block of a changed file: %v, want EIO", err)
	}
	if bytes.Contains(p, []byte("NEW!")) {
		t.Error("served the new version's bytes")
	}
	fh.Close()
	f.e.unmount(mnt)
	log := string(readAll(t, filepath.Join(f.cacheDir, "cachefs.log")))
	if !strings.Contains(log, "changed since the snapshot") || !strings.Contains(log, "rec") {
		t.Errorf("the log does not name the changed file:\n%s", log)
	}
}

// cacheBytes is the disk space the cache's block files take.
func cacheBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(filepath.Join(dir, "blocks"), func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			n += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	if err != nil {
		t.Fatalf("measuring the cache: %v", err)
	}
	return n
}

// summaryCount reads the number before what in a figures line ("3
// evictions"), failing the test if the line has none: a changed format
// must not pass as a zero.
func summaryCount(t *testing.T, line, what string) int {
	t.Helper()
	m := regexp.MustCompile(`([\d,]+) ` + regexp.QuoteMeta(what)).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no %q in %q", what, line)
	}
	n, err := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCacheStaysUnderBudget(t *testing.T) {
	f := newCacheFixture(t, sizedFiles(16, "d/f%02d", 512<<10), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--cache-size", "4MiB", "--block-size", "256KiB")
	for name, b := range f.files {
		if !bytes.Equal(readAll(t, filepath.Join(mnt, name)), b) {
			t.Errorf("%s differs", name)
		}
		// Files are closed after each read, so nothing is pinned.
		n := cacheBytes(t, f.cacheDir)
		if n > 4<<20+64<<10 {
			t.Fatalf("cache holds %d bytes with a 4 MiB budget", n)
		}
		if n == 0 {
			t.Fatal("the cache holds nothing after a read: the measure does not see it")
		}
	}
	r := f.e.unmount(mnt)
	if summaryCount(t, r.stdout, "evictions") == 0 {
		t.Errorf("reading twice the budget evicted nothing: %q", r.stdout)
	}
}

func TestFullCacheDiskKeepsReadsCorrect(t *testing.T) {
	f := newCacheFixture(t, sizedFiles(8, "f%d", 1<<20), slowfs.Options{})
	os.MkdirAll(f.cacheDir, 0o700)
	t.Cleanup(func() { unix.Unmount(f.cacheDir, unix.MNT_DETACH) })
	if err := unix.Mount("tmpfs", f.cacheDir, "tmpfs", 0, "size=3m,mode=0700"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--cache-size", "100MiB", "--log-file", filepath.Join(f.e.tmp, "cachefs.log"))
	start := time.Now()
	f.readAllEqual(t, mnt, "with a full cache disk")
	f.e.unmount(mnt)
	// Block after block fails to store, and the log says so once per
	// 30 s episode (one, unless the machine is very slow).
	episodes := 1 + int(time.Since(start)/(30*time.Second))
	if n := strings.Count(string(readAll(t, filepath.Join(f.e.tmp, "cachefs.log"))), "cache disk failed"); n < 1 || n > episodes {
		t.Errorf("the log says the cache disk failed %d times, want once per episode (%d)", n, episodes)
	}
}

// cacheDisk moves f's cache directory onto a disk the test can fail or
// hold: the slow-source fixture over a directory of the test's. It is
// unmounted after the test's mounts, whose cleanups run first.
func (f *cacheFixture) cacheDisk(t *testing.T) *slowfs.FS {
	t.Helper()
	base, mnt := filepath.Join(f.e.tmp, "disk-base"), filepath.Join(f.e.tmp, "disk")
	for _, d := range []string{base, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	disk := mountSlow(t, base, mnt, slowfs.Options{})
	f.cacheDir = filepath.Join(mnt, "cache")
	return disk
}

// mountSlow mounts the slow-source fixture of base at mnt for the rest of
// the test; a failed unmount at the end fails the test.
func mountSlow(t testing.TB, base, mnt string, opts slowfs.Options) *slowfs.FS {
	t.Helper()
	sfs, err := slowfs.Mount(base, mnt, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sfs.Unmount(); err != nil {
			t.Error(err)
		}
	})
	return sfs
}

// TestCacheDiskIOErrorKeepsReadsCorrect: a cache disk whose writes fail
// with EIO (a filesystem over failing sectors: the slow-source fixture
// with its writes failed, mounted as the cache disk) costs only the
// caching. Every read returns the source's bytes, straight from the
// source, and the log says once per 30 s episode that the disk failed,
// with the disk's error.
func TestCacheDiskIOErrorKeepsReadsCorrect(t *testing.T) {
	f := newCacheFixture(t, sizedFiles(6, "f%d", 1<<20), slowfs.Options{})
	disk := f.cacheDisk(t)
	logFile := filepath.Join(f.e.tmp, "cachefs.log")
	mnt := filepath.Join(f.e.tmp, "mnt")
	// No passthrough: the kernel would read cached files from the disk
	// without the daemon.
	f.mount(mnt, "--passthrough", "off", "--prefetch", "off", "--read-ahead", "0", "--log-file", logFile)
	if !bytes.Equal(readAll(t, filepath.Join(mnt, "f0")), f.files["f0"]) {
		t.Fatal("f0 differs while the cache disk works")
	}
	disk.FailWrites(syscall.EIO)
	start := time.Now()
	f.sfs.Reset()
	f.readAllEqual(t, mnt, "while the cache disk fails")
	if got, want := f.sfs.Counts().BytesRead, uint64(5<<20); got != want {
		t.Errorf("the source served %d bytes for the 5 MiB not cached, want exactly that", got)
	}
	f.e.unmount(mnt)
	episodes := 1 + int(time.Since(start)/(30*time.Second))
	var failed []string
	for _, l := range strings.Split(string(readAll(t, logFile)), "\n") {
		if strings.Contains(l, "cache disk failed") {
			failed = append(failed, l)
		}
	}
	if len(failed) < 1 || len(failed) > episodes {
		t.Errorf("the log says the cache disk failed %d times in %d 30 s episodes, want once per episode:\n%s", len(failed), episodes, strings.Join(failed, "\n"))
	}
	for _, l := range failed {
		if !strings.Contains(l, syscall.EIO.Error()) {
			t.Errorf("the log line does not give the disk's error (%v): %s", syscall.EIO, l)
		}
	}
}

func TestSecondMountOnCacheDirRefused(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"a": 10}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt)
	r := f.e.run("mount", f.slow, filepath.Join(f.e.tmp, "mnt2"), "--cache-dir", f.cacheDir)
	if r.code != 9 || !strings.Contains(r.stderr, mnt) {
		t.Errorf("second mount on one cache dir: exit %d %q, want 9 naming the first mount", r.code, r.stderr)
	}
	if isMounted(filepath.Join(f.e.tmp, "mnt2")) {
		t.Error("second mount mounted")
	}
	f.e.unmount(mnt)
}

// TestOpenWhileCompletedElsewhere: a file opened while partly cached, kept
// open, then completed through another descriptor, must still open again.
// The kernel refuses to mix passthrough and ordinary opens of one inode.
func TestOpenWhileCompletedElsewhere(t *testing.T) {
	const bs = 64 << 10
	f := newCacheFixture(t, map[string]int{"x": 4 * bs}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--block-size", "64KiB", "--prefetch", "off", "--read-ahead", "0", "--passthrough=on")
	p := filepath.Join(mnt, "x")
	f1, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f1.ReadAt(make([]byte, 10), 0)
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(b, f.files["x"]) {
			t.Fatalf("open %d while an earlier descriptor is open: %v", i+2, err)
		}
	}
	buf := make([]byte, bs)
	if _, err := f1.ReadAt(buf, 3*bs); err != nil || !bytes.Equal(buf, f.files["x"][3*bs:]) {
		t.Fatalf("the first descriptor: %v", err)
	}
	f1.Close()
	// With every descriptor closed, the file still opens (it stays off
	// passthrough for this mount: its first open was not complete).
	if b, err := os.ReadFile(p); err != nil || !bytes.Equal(b, f.files["x"]) {
		t.Fatalf("open after all closed: %v", err)
	}
	f.e.unmount(mnt)
}

// TestOpenModes: with the kernel opening files itself (auto picks it for
// small files), re-opening a file read once costs the daemon nothing, and
// the bytes are right after the page cache is dropped; with
// --passthrough=on every open reaches the daemon. Judged by the daemon's
// own open counter, which counts the opens that reached it.
func TestOpenModes(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"a": 300 << 10, "b": 5 << 20}, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	reread := func(name string, times int) {
		t.Helper()
		for i := 0; i < times; i++ {
			if !bytes.Equal(readAll(t, filepath.Join(mnt, name)), f.files[name]) {
				t.Fatalf("%s differs on read %d", name, i+1)
			}
		}
	}

	f.mount(mnt, "--prefetch", "off")
	m := statusOf(t, f.e, mnt)
	if mode, _ := m["open_mode"].(string); !strings.Contains(mode, "the kernel opens files itself") || m["passthrough"] != false {
		t.Errorf("auto with files averaging 2.6 MiB: open_mode %q, passthrough %v", mode, m["passthrough"])
	}
	reread("a", 10)
	m = statusOf(t, f.e, mnt)
	if got := num(t, m, "opens"); got != 1 {
		t.Errorf("10 opens of a file with the kernel opening: %v reached the daemon, want 1", got)
	}
	// The page cache is kept across the kernel's opens: only the first
	// read's bytes went through the daemon.
	if got := num(t, m, "bytes_served"); got != float64(len(f.files["a"])) {
		t.Errorf("10 reads of a %d-byte file: the daemon served %v bytes", len(f.files["a"]), got)
	}
	// Reads that miss the page cache come without a handle and are served.
	dropCaches(t)
	f.sfs.Reset()
	reread("a", 2)
	reread("b", 1)
	if c := f.sfs.Counts(); c.BytesRead != uint64(len(f.files["b"])) {
		t.Errorf("after dropping the page cache: %d bytes from the source, want only b's %d", c.BytesRead, len(f.files["b"]))
	}
	f.e.unmount(mnt)

	f.mount(mnt, "--prefetch", "off", "--passthrough=on")
	reread("a", 10)
	m = statusOf(t, f.e, mnt)
	if got := num(t, m, "opens"); got != 10 {
		t.Errorf("10 opens with --passthrough=on: %v reached the daemon, want 10", got)
	}
	// go-fuse asks for the backing file only when no passthrough open of
	// the inode is left (the kernel releases asynchronously, so a reopen
	// can share the last one's): at least one, and the daemon served none
	// of the bytes.
	if m["passthrough"] != true || num(t, m, "cache.passthrough_opens") < 1 || num(t, m, "bytes_served") != 0 {
		t.Errorf("--passthrough=on as root: passthrough %v, %v passthrough opens, %v bytes served by the daemon; want passthrough and 0 bytes",
			m["passthrough"], num(t, m, "cache.passthrough_opens"), num(t, m, "bytes_served"))
	}
	f.e.unmount(mnt)

	if r := f.e.run("mount", f.slow, mnt, "--passthrough=sometimes"); r.code != 2 || !strings.Contains(r.stderr, "--passthrough") {
		t.Errorf("--passthrough=sometimes: exit %d %q, want 2", r.code, r.stderr)
	}
}

// TestPassthroughFileEvictedThenReopened: a file passed through, closed,
// then evicted, opens the ordinary way; completing it again through that
// open and opening it once more must not mix passthrough with the open
// still held (the kernel fails such an open with EIO).
func TestPassthroughFileEvictedThenReopened(t *testing.T) {
	sizes := map[string]int{"a": 1 << 20}
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		sizes[n] = 1 << 20
	}
	f := newCacheFixture(t, sizes, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	args := []string{"--passthrough=on", "--prefetch", "off", "--cache-size", "4MiB", "--block-size", "256KiB", "--read-ahead", "0"}
	f.mount(mnt, args...)
	readAll(t, filepath.Join(mnt, "a"))
	f.e.unmount(mnt)

	f.mount(mnt, args...)
	pa := filepath.Join(mnt, "a")
	if !bytes.Equal(readAll(t, pa), f.files["a"]) { // complete at its first open: passed through
		t.Fatal("a differs")
	}
	for _, n := range []string{"b", "c", "d", "e", "f", "g"} {
		readAll(t, filepath.Join(mnt, n))
	}
	if m := statusOf(t, f.e, mnt); num(t, m, "cache.evictions") == 0 {
		t.Fatal("reading 6 MiB through a 4 MiB cache evicted nothing; the test proves nothing")
	}
	held, err := os.Open(pa) // a is no longer complete: an ordinary open
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	got := make([]byte, len(f.files["a"]))
	if _, err := held.ReadAt(got, 0); err != nil || !bytes.Equal(got, f.files["a"]) {
		t.Fatalf("read through the ordinary open: %v", err)
	}
	for i := 0; i < 3; i++ {
		if b, err := os.ReadFile(pa); err != nil || !bytes.Equal(b, f.files["a"]) {
			t.Fatalf("open %d while the ordinary open is held: %v", i+1, err)
		}
	}
	held.Close()
	f.e.unmount(mnt)
}
