package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cachefs/cachefs/integration/treetest"
	"golang.org/x/sys/unix"
)

func TestTreeEquality(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	mnt := filepath.Join(e.tmp, "mnt")
	os.Mkdir(src, 0o755)
	st := treetest.BuildAwkward(t, src)
	_, summary := e.mount(src, mnt)
	if want := fmt.Sprintf("%d entries", st.Entries+1); !strings.Contains(strings.ReplaceAll(summary, ",", ""), want) {
		t.Errorf("summary %q does not say %q", summary, want)
	}
	treetest.CompareTrees(t, src, mnt, treetest.CompareOptions{CheckNlink: true, CheckInodes: true})
	if treetest.HashTree(t, src) != treetest.HashTree(t, mnt) {
		t.Error("tree hashes differ")
	}
	r := e.unmount(mnt)
	if !strings.Contains(r.stdout, "unmounted") {
		t.Errorf("unmount said %q", r.stdout)
	}
}

// metadataStorm does what a dataloader and a user poking at the tree do,
// without reading file contents.
func metadataStorm(t *testing.T, mnt string) (symlinks int) {
	t.Helper()
	if out, err := combinedAs(t, nil, "find", mnt); err != nil {
		t.Fatalf("find: %v: %s", err, out)
	}
	if out, err := combinedAs(t, nil, "ls", "-lR", mnt); err != nil {
		t.Fatalf("ls -lR: %v: %s", err, out)
	}
	err := filepath.Walk(mnt, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err != nil && fi.Mode()&os.ModeSymlink == 0 {
			return err
		}
		unix.Lgetxattr(p, "user.x", make([]byte, 64))
		if fi.Mode()&os.ModeSymlink != 0 {
			if _, err := os.Readlink(p); err != nil {
				return err
			}
			symlinks++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		p := filepath.Join(mnt, fmt.Sprintf("d%d", i%7), fmt.Sprintf("missing-%d.json", i))
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("stat of missing %s: %v", p, err)
		}
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(mnt, &sfs); err != nil {
		t.Fatal(err)
	}
	return symlinks
}

// TestZeroMetadataAfterMount proves invariant 1 at a source the test
// controls: after the mount returns, browsing costs the source nothing.
func TestZeroMetadataAfterMount(t *testing.T) {
	e := newEnv(t)
	_, slowMnt, sfs := slowTree(t, e)

	mnt := filepath.Join(e.tmp, "mnt")
	// Prefetch off: the byte count below is for the one file read.
	e.mount(slowMnt, mnt, "--prefetch", "off")
	walk := sfs.Counts()
	if walk.Meta < 7*32 {
		t.Fatalf("the fixture counted only %d metadata ops during the walk: it is not seeing the daemon", walk.Meta)
	}
	t.Logf("walk: %d metadata ops at the source", walk.Meta)

	sfs.Reset()
	if n := metadataStorm(t, mnt); n != 14 {
		t.Errorf("saw %d symlinks, want 14", n)
	}
	metadataStorm(t, mnt)
	if c := sfs.Counts(); c.Meta != 0 || c.Opens != 0 || c.Reads != 0 {
		t.Errorf("after mount the source served metadata calls: %v", c.Ops)
	}

	// Contents do reach the source: this is what makes the zero above mean
	// something.
	b, err := os.ReadFile(filepath.Join(mnt, "d3/sub/f05.json"))
	if err != nil || string(b) != strings.Repeat("x", 50) {
		t.Fatalf("read through the mount: %q %v", b, err)
	}
	if c := sfs.Counts(); c.Opens == 0 || c.BytesRead != 50 {
		t.Errorf("reading a file did not reach the source: %v", c.Ops)
	}
	e.unmount(mnt)
}

func TestWritesAreRefused(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "dir"), 0o755)
	os.WriteFile(filepath.Join(src, "file"), []byte("data"), 0o644)
	os.Symlink("file", filepath.Join(src, "link"))
	before := treetest.HashTree(t, src)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)

	p := func(s string) string { return filepath.Join(mnt, s) }
	attempts := map[string]func() error{
		"create":    func() error { return os.WriteFile(p("new"), []byte("x"), 0o644) },
		"write":     func() error { return os.WriteFile(p("file"), []byte("x"), 0o644) },
		"append":    func() error { _, err := os.OpenFile(p("file"), os.O_APPEND|os.O_WRONLY, 0); return err },
		"truncate":  func() error { return os.Truncate(p("file"), 0) },
		"mkdir":     func() error { return os.Mkdir(p("newdir"), 0o755) },
		"rmdir":     func() error { return os.Remove(p("dir")) },
		"unlink":    func() error { return os.Remove(p("file")) },
		"rename":    func() error { return os.Rename(p("file"), p("file2")) },
		"chmod":     func() error { return os.Chmod(p("file"), 0o600) },
		"chown":     func() error { return os.Lchown(p("file"), 1, 1) },
		"utimes":    func() error { return unix.UtimesNano(p("file"), []unix.Timespec{{}, {}}) },
		"symlink":   func() error { return os.Symlink("x", p("sl")) },
		"link":      func() error { return os.Link(p("file"), p("hl")) },
		"mknod":     func() error { return unix.Mkfifo(p("fifo"), 0o644) },
		"setxattr":  func() error { return unix.Setxattr(p("file"), "user.k", []byte("v"), 0) },
		"removexat": func() error { return unix.Removexattr(p("file"), "user.k") },
	}
	for name, f := range attempts {
		if err := f(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: got %v, want EROFS", name, err)
		}
	}
	e.unmount(mnt)
	if after := treetest.HashTree(t, src); after != before {
		t.Error("the source changed")
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644)
	full := filepath.Join(e.tmp, "full")
	os.Mkdir(full, 0o755)
	os.WriteFile(filepath.Join(full, "keep"), []byte("mine"), 0o644)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)

	cases := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"missing source", []string{"mount", filepath.Join(e.tmp, "nope"), filepath.Join(e.tmp, "m1")}, 3, "does not exist"},
		{"source is a file", []string{"mount", filepath.Join(src, "f"), filepath.Join(e.tmp, "m2")}, 3, "not a directory"},
		{"non-empty mountpoint", []string{"mount", src, full}, 4, "not empty"},
		{"mountpoint is a file", []string{"mount", src, filepath.Join(full, "keep")}, 4, "not a directory"},
		{"mountpoint hides source", []string{"mount", src, e.tmp}, 4, "hide the source"},
		{"already mounted", []string{"mount", src, mnt}, 5, "already mounted"},
		{"unknown flag", []string{"mount", "--frobnicate", src, filepath.Join(e.tmp, "m3")}, 2, "unknown flag"},
		{"missing argument", []string{"mount", src}, 2, "accepts 2 arg"},
		{"unknown command", []string{"frob"}, 2, "unknown command"},
		{"unmount not mounted", []string{"unmount", full}, 7, "not mounted"},
		{"bad log level", []string{"--log-level", "loud", "mount", src, filepath.Join(e.tmp, "m4")}, 2, "log-level"},
	}
	for _, c := range cases {
		r := e.run(c.args...)
		if r.code != c.code {
			t.Errorf("%s: exit %d, want %d (stderr %q)", c.name, r.code, c.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.msg) {
			t.Errorf("%s: stderr %q, want one line containing %q", c.name, r.stderr, c.msg)
		}
	}
	for _, m := range []string{"m1", "m2", "m3", "m4"} {
		if isMounted(filepath.Join(e.tmp, m)) {
			t.Errorf("%s mounted after a failed mount", m)
		}
	}
	if b, err := os.ReadFile(filepath.Join(full, "keep")); err != nil || string(b) != "mine" {
		t.Errorf("the non-empty mountpoint lost its content: %q %v", b, err)
	}
	if isMounted(full) {
		t.Error("mounted over a non-empty directory")
	}
	e.unmount(mnt)
	if left := e.daemons(); len(left) != 0 {
		t.Errorf("daemons left after failed mounts: %v", left)
	}
}

// mountWithOpenFile mounts smallSource and opens its file through the
// mount; the test closes it.
func mountWithOpenFile(t *testing.T) (e *env, mnt string, pid int, f *os.File) {
	t.Helper()
	e = newEnv(t)
	src := smallSource(t, e)
	mnt = filepath.Join(e.tmp, "mnt")
	pid, _ = e.mount(src, mnt)
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return e, mnt, pid, f
}

// wantContents checks that f, opened by mountWithOpenFile, still reads.
func wantContents(t *testing.T, f *os.File, when string) {
	t.Helper()
	b := make([]byte, 8)
	if n, err := f.ReadAt(b, 0); n != 8 || string(b) != "contents" {
		t.Errorf("read %s: %q %v", when, b[:n], err)
	}
}

func TestUnmountBusy(t *testing.T) {
	e, mnt, pid, f := mountWithOpenFile(t)
	r := e.run("unmount", mnt)
	if r.code != 8 || !strings.Contains(r.stderr, "busy") {
		t.Errorf("unmount of a busy mount: exit %d, %q", r.code, r.stderr)
	}
	if !isMounted(mnt) || !processAlive(pid) {
		t.Fatal("a refused unmount took the mount or the daemon away")
	}
	wantContents(t, f, "after a refused unmount")
	f.Close()
	r = e.unmount(mnt)
	if processAlive(pid) {
		t.Error("unmount returned before the daemon exited")
	}
	if !strings.Contains(r.stdout, "served 8 B in 1 opens") {
		t.Errorf("unmount figures: %q", r.stdout)
	}
}

func TestUnmountLazy(t *testing.T) {
	e, mnt, pid, f := mountWithOpenFile(t)
	if r := e.run("unmount", "--lazy", mnt); r.code != 0 {
		t.Fatalf("lazy unmount: %d %s", r.code, r.stderr)
	}
	if isMounted(mnt) {
		t.Error("still in the mount table after a lazy unmount")
	}
	wantContents(t, f, "after a lazy unmount")
	f.Close()
	if !waitGone(pid, 10e9) {
		t.Error("daemon did not exit after its last file closed")
	}
}

func TestKill9ThenRemount(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("still here"), 0o644)
	mnt := filepath.Join(e.tmp, "mnt")
	pid, _ := e.mount(src, mnt)
	syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, 10e9) {
		t.Fatal("kill -9 did not end the daemon")
	}
	// The kernel answers ENOTCONN, ECONNABORTED or EIO depending on what it
	// had cached; any error shows the mount is dead.
	if _, err := os.ReadFile(filepath.Join(mnt, "f")); err == nil {
		t.Fatal("read on a dead mount succeeded")
	}
	// A new mount over the dead one cleans it first.
	e.mount(src, mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "still here" {
		t.Fatalf("after remount: %q %v", b, err)
	}
	// And unmount cleans a dead mount too.
	pid2 := pidOf(t, e, mnt)
	syscall.Kill(pid2, syscall.SIGKILL)
	waitGone(pid2, 10e9)
	r := e.run("unmount", mnt)
	if r.code != 0 || !strings.Contains(r.stdout, "daemon had died") || isMounted(mnt) {
		t.Errorf("unmount of a dead mount: %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// pidOf finds the daemon e started to serve mnt.
func pidOf(t *testing.T, e *env, mnt string) int {
	if pids := e.daemonsAt(mnt); len(pids) == 1 {
		return pids[0]
	}
	t.Fatalf("no daemon for %s", mnt)
	return 0
}

// TestSigtermUnmounts: SIGTERM and SIGINT to the daemon unmount and end
// it, and the mountpoint is reusable at once.
func TestSigtermUnmounts(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(e.tmp, "mnt")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		pid, _ := e.mount(src, mnt)
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
		if !waitGone(pid, hangGuard) {
			t.Fatalf("daemon ignored %v", sig)
		}
		if isMounted(mnt) {
			t.Errorf("%v left the mount behind", sig)
		}
	}
	e.mount(src, mnt)
	e.unmount(mnt)
}
