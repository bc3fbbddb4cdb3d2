package integration

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/internal/testutil"
	"golang.org/x/sys/unix"
)

// readGuarded reads p whole, failing the test if the read has not returned
// after a deadline far beyond any healthy read: a hang, not a slow read.
func readGuarded(t *testing.T, p string) ([]byte, error) {
	t.Helper()
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() {
		b, err := os.ReadFile(p)
		ch <- res{b, err}
	}()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("read of %s has not returned: blocked", p)
		return nil, nil
	}
}

func threads(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// FIFOs swapped in for source files after the snapshot: each read fails
// with EIO at once, no daemon thread stays behind in open, and prefetch
// workers that meet them finish.
func TestSourceFIFOSwappedIn(t *testing.T) {
	const n = 100
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	dir := filepath.Join(src, "many")
	os.MkdirAll(dir, 0o755)
	for i := range n {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte("data\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "regular"), []byte("regular\n"), 0o644)
	mnt := filepath.Join(e.tmp, "mnt")
	pid, _ := e.mount(src, mnt, "--prefetch=off")
	for i := range n {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := readGuarded(t, filepath.Join(mnt, "many/regular")); err != nil || string(b) != "regular\n" {
		t.Fatalf("regular file: %q %v", b, err)
	}
	before := threads(t, pid)
	for round := range 2 {
		for i := range n {
			b, err := readGuarded(t, filepath.Join(mnt, fmt.Sprintf("many/f%03d", i)))
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("round %d: read of a FIFO swapped in: %q %v, want EIO", round, b, err)
			}
		}
	}
	// A few threads may come and go with the runtime's needs; one per FIFO
	// read is the failure this guards against.
	if after := threads(t, pid); after > before+n/4 {
		t.Errorf("daemon threads grew from %d to %d over %d FIFO reads", before, after, 2*n)
	}
	e.unmount(mnt)
}

// The same with prefetch: opening a regular file queues its FIFO siblings,
// and the workers must come back from them.
func TestSourceFIFOSwappedInPrefetch(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	dir := filepath.Join(src, "many")
	os.MkdirAll(dir, 0o755)
	for i := range 40 {
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), []byte("data\n"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "regular"), []byte("regular\n"), 0o644)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)
	for i := range 40 {
		p := filepath.Join(dir, fmt.Sprintf("f%03d", i))
		os.Remove(p)
		if err := unix.Mkfifo(p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := readGuarded(t, filepath.Join(mnt, "many/regular")); err != nil || string(b) != "regular\n" {
		t.Fatalf("regular file: %q %v", b, err)
	}
	waitPrefetch(t, e, mnt)
	e.unmount(mnt)
}

// A directory of the source swapped for a symlink to a directory outside
// it: the reader gets EIO and the daemon opens nothing outside.
func TestSourceSymlinkedDirectoryNotFollowed(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"d/f": "in the source\n", "d/g": "in the source\n"})
	outside := filepath.Join(e.tmp, "outside")
	writeFiles(t, outside, 0o600, map[string]string{"f": "outside\n", "g": "outside\n"})
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)
	if err := os.RemoveAll(filepath.Join(src, "d")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(src, "d")); err != nil {
		t.Fatal(err)
	}
	opens := testutil.WatchOpens(t, outside)
	for _, name := range []string{"d/f", "d/g"} {
		b, err := readGuarded(t, filepath.Join(mnt, name))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("%s through a symlinked directory: %q %v, want EIO", name, b, err)
		}
	}
	if n := opens(); n != 0 {
		t.Errorf("%d opens in the directory outside the source", n)
	}
	// The watch does see opens there.
	readAll(t, filepath.Join(outside, "f"))
	if n := opens(); n != 1 {
		t.Errorf("inotify counted %d opens of a file read outside, want 1", n)
	}
	e.unmount(mnt)
}

// The source's filesystem dies (its server killed: ENOTCONN) and comes
// back mounted again with a new device number and the same inodes, sizes
// and mtimes: while it is down readers get EIO, never ENOTCONN, and once
// it is back files not yet cached are served, not refused as changed.
func TestSourceRemountedNewDevice(t *testing.T) {
	e := newEnv(t)
	base := filepath.Join(e.tmp, "base")
	slow := filepath.Join(e.tmp, "slow")
	os.MkdirAll(filepath.Join(base, "d"), 0o755)
	os.MkdirAll(slow, 0o755)
	r := rand.New(rand.NewSource(7))
	files := map[string][]byte{}
	for _, name := range []string{"d/a", "d/b", "d/c"} {
		b := make([]byte, 300<<10)
		r.Read(b)
		files[name] = b
		os.WriteFile(filepath.Join(base, name), b, 0o644)
	}
	server := startSlowfs(t, base, slow)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(slow, mnt, "--prefetch=off", "--cache-dir", filepath.Join(e.tmp, "cache"))
	if b, _ := readGuarded(t, filepath.Join(mnt, "d/a")); !bytes.Equal(b, files["d/a"]) {
		t.Fatal("d/a differs before the remount")
	}

	// Hold the dead mount so the new one cannot reuse its device number.
	pin, err := unix.Open(slow, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pin)
	var old unix.Stat_t
	unix.Fstat(pin, &old)
	syscall.Kill(server, syscall.SIGKILL)
	if !waitGone(server, hangGuard) {
		t.Fatalf("the source's server %d outlived SIGKILL", server)
	}
	if _, err := readGuarded(t, filepath.Join(mnt, "d/b")); !errors.Is(err, syscall.EIO) {
		t.Errorf("read while the source is down: %v, want EIO", err)
	}
	if err := unix.Unmount(slow, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	startSlowfs(t, base, slow)
	var now unix.Stat_t
	if err := unix.Stat(slow, &now); err != nil || now.Dev == old.Dev {
		t.Fatalf("the remounted source has device %d, before %d (%v): not a new device", now.Dev, old.Dev, err)
	}
	unix.Close(pin)

	for _, name := range []string{"d/b", "d/c", "d/a"} {
		b, err := readGuarded(t, filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(b, files[name]) {
			t.Errorf("%s after the source came back on a new device: %d bytes, %v", name, len(b), err)
		}
	}
	e.unmount(mnt)
}
