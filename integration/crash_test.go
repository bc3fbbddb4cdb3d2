package integration

// kill -9 of the daemon at chosen moments of the cache's life, then a new
// mount over the same cache directory. The cache directory lies on the
// test's own disk (the slow-source fixture), which holds the daemon inside
// the one request that matters until the test has killed it: the kill
// lands there every time, with no hook in cachefs.

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// presenceRecord is the size of one presence-log record (blockcache's
// recordSize): the only write of that size the daemon makes.
const presenceRecord = 12

// crashFlags keep the daemon's requests to the source and the disk to the
// blocks the test reads, in the order it reads them.
var crashFlags = []string{"--block-size", "64KiB", "--read-ahead", "0", "--prefetch", "off", "--passthrough", "off"}

const crashBlock = 64 << 10

// killWhileHeld starts read (if any), waits until the disk holds the
// daemon's request, kills the daemon, then lets the request go (it fails,
// unseen) and waits for read to end with the dead mount.
func killWhileHeld(t *testing.T, pid int, held <-chan struct{}, release func(), read func()) {
	t.Helper()
	defer release()
	done := make(chan struct{})
	if read != nil {
		go func() {
			defer close(done)
			read()
		}()
	}
	select {
	case <-held:
	case <-done:
		t.Fatal("the read ended without the daemon reaching the held request")
	case <-time.After(hangGuard):
		t.Fatal("the daemon never reached the held request")
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The thread in the held request waits for its answer even killed
	// (the kernel does not abandon a FUSE request the server has read),
	// but no thread runs another instruction once kill returns: the
	// request's failure is never seen.
	release()
	if !waitGone(pid, hangGuard) {
		t.Fatal("the daemon outlived SIGKILL")
	}
	if read == nil {
		return
	}
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("a read of the killed daemon's mount hung")
	}
}

// TestKill9MidAppendThenRemount: killed while appending a block's presence
// record, with part of the record on disk, the cache keeps the blocks
// recorded before it; a new mount serves the file's bytes and fetches
// exactly the blocks not recorded, the torn one among them.
func TestKill9MidAppendThenRemount(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"a": 8 * crashBlock}, slowfs.Options{})
	disk := f.cacheDisk(t)
	mnt := filepath.Join(f.e.tmp, "mnt")
	pid := f.mount(mnt, crashFlags...)
	fh, err := os.Open(filepath.Join(mnt, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	// Only the blocks asked for: no kernel read-ahead.
	if err := unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, crashBlock)
	for b := 0; b < 3; b++ {
		if _, err := fh.ReadAt(p, int64(b*crashBlock)); err != nil || !bytes.Equal(p, f.files["a"][b*crashBlock:(b+1)*crashBlock]) {
			t.Fatalf("block %d: %v", b, err)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(f.e.tmp, "disk-base", "cache", "blocks", "*", "*.present"))
	if len(logs) != 1 {
		t.Fatalf("presence logs on the disk: %v, want one", logs)
	}
	before := fileSize(t, logs[0])
	const torn = 5
	held, release := disk.HoldWrite(func(n int) bool { return n == presenceRecord }, torn)
	killWhileHeld(t, pid, held, release, func() { _, _ = fh.ReadAt(p, 3*crashBlock) })
	if after := fileSize(t, logs[0]); after != before+torn {
		t.Fatalf("the presence log grew from %d to %d bytes, want %d more: the kill was not mid-append", before, after, torn)
	}

	f.mount(mnt, crashFlags...) // cleans the dead mount and takes the cache dir again
	f.sfs.Reset()
	if !bytes.Equal(readAll(t, filepath.Join(mnt, "a")), f.files["a"]) {
		t.Fatal("bytes differ after kill -9 mid-append and remount")
	}
	if got, want := f.sfs.Counts().BytesRead, uint64(5*crashBlock); got != want {
		t.Errorf("the remount fetched %d bytes, want exactly the 5 blocks not recorded (%d)", got, want)
	}
	f.e.unmount(mnt)
	// What the remount stored was recorded after the torn bytes were cut
	// off, so the next mount finds all of it.
	f.mount(mnt, crashFlags...)
	f.sfs.Reset()
	if !bytes.Equal(readAll(t, filepath.Join(mnt, "a")), f.files["a"]) {
		t.Fatal("bytes differ at the mount after the remount")
	}
	if got := f.sfs.Counts().BytesRead; got != 0 {
		t.Errorf("the mount after the remount fetched %d bytes, want 0: the records appended after the torn one were lost", got)
	}
	f.e.unmount(mnt)
}

// TestKill9MidEvictionThenRemount: killed between the two removals of an
// eviction (the presence log gone, the data file not yet), here the
// eviction a mount's restart scan makes to bring leftovers under a smaller
// budget, the cache never serves the data file left without its log: a new
// mount fetches that file whole and serves both files' bytes.
func TestKill9MidEvictionThenRemount(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"a": 4 * crashBlock, "b": 4 * crashBlock}, slowfs.Options{})
	disk := f.cacheDisk(t)
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, crashFlags...)
	f.readAllEqual(t, mnt, "with room for both")
	f.e.unmount(mnt)
	// Room for five blocks of the eight cached: the scan evicts one file.
	flags := append([]string{"--cache-size", "320KiB"}, crashFlags...)
	held, release := disk.HoldUnlink(func(name string) bool { return !strings.HasSuffix(name, ".present") })
	pid := f.mount(mnt, flags...)
	killWhileHeld(t, pid, held, release, nil)
	orphans := dataWithoutLog(t, filepath.Join(f.e.tmp, "disk-base", "cache", "blocks"))
	if len(orphans) != 1 {
		t.Fatalf("data files without a presence log after the kill: %v, want the evicted one: the kill was not mid-eviction", orphans)
	}
	evicted := cachedFileOf(t, f, orphans[0])

	f.mount(mnt, flags...)
	f.sfs.Reset()
	if !bytes.Equal(readAll(t, filepath.Join(mnt, evicted)), f.files[evicted]) {
		t.Fatalf("%s differs after kill -9 mid-eviction and remount", evicted)
	}
	if got, want := f.sfs.Counts().BytesRead, uint64(4*crashBlock); got != want {
		t.Errorf("the remount fetched %d bytes of %s, whose log was evicted, want all of it (%d)", got, evicted, want)
	}
	f.readAllEqual(t, mnt, "after kill -9 mid-eviction and remount")
	f.e.unmount(mnt)
}

// cachedFileOf names the fixture file whose bytes the data file p holds.
func cachedFileOf(t *testing.T, f *cacheFixture, p string) string {
	t.Helper()
	b := readAll(t, p)
	for name, want := range f.files {
		if bytes.Equal(b, want) {
			return name
		}
	}
	t.Fatalf("the data file %s holds no fixture file's bytes", p)
	return ""
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// dataWithoutLog lists the data files under blocks that have no presence
// log beside them.
func dataWithoutLog(t *testing.T, blocks string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(blocks, "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range files {
		if strings.HasSuffix(p, ".present") {
			continue
		}
		if _, err := os.Stat(p + ".present"); os.IsNotExist(err) {
			out = append(out, p)
		}
	}
	return out
}
