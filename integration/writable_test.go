package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// python is Debian's interpreter, whose dist-packages hold python3-filelock.
const python = "/usr/bin/python3"

// pushTemp starts every temporary name a push writes in SOURCE.
const pushTemp = ".cachefs-push."

func needFilelock(t *testing.T) {
	t.Helper()
	if out, err := combinedAs(t, nil, python, "-c", "import filelock"); err != nil {
		t.Fatalf("python3-filelock is needed (apt-get install python3-filelock): %v: %s", err, out)
	}
}

// runPy runs a Python program with args and returns its stdout.
func runPy(t *testing.T, prog string, args ...string) string {
	t.Helper()
	out, err := combinedAs(t, nil, python, append([]string{"-c", prog}, args...)...)
	if err != nil {
		t.Fatalf("python: %v: %s", err, out)
	}
	return out
}

// holdLock is what filelock's users do before they touch a cached dataset:
// O_RDWR|O_CREAT|O_NOFOLLOW on the lock file, then flock. It holds the lock
// until stdin closes.
const holdLock = `
import sys, filelock
l = filelock.FileLock(sys.argv[1])
l.acquire()
print("held", flush=True)
sys.stdin.read()
l.release()
`

// tryLock reports whether another process holds the lock, then waits for it.
const tryLock = `
import sys, filelock
l = filelock.FileLock(sys.argv[1], timeout=0.2)
try:
    l.acquire()
    print("acquired-early")
except filelock.Timeout:
    print("timeout")
l.acquire(timeout=60)
print("acquired")
l.release()
`

// tempRenameMmap is datasets' .map(): NamedTemporaryFile in the dataset
// directory, shutil.move to the final name, chmod, then mmap.
const tempRenameMmap = `
import sys, os, tempfile, shutil, mmap
d, data = sys.argv[1], sys.argv[2].encode() * 1000
with tempfile.NamedTemporaryFile(dir=d, delete=False) as f:
    f.write(data)
    tmp = f.name
final = os.path.join(d, "cache-0123abcd.arrow")
shutil.move(tmp, final)
os.chmod(final, 0o644)
with open(final, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    assert m[:] == data, "mmap read back other bytes"
    m.close()
print("ok")
`

// TestWritableClients runs what dataset clients do in their cache dir
// through a writable mount over the slow-source fixture: filelock
// contention between two processes, temp file + rename + mmap, an O_TRUNC
// rewrite. The source sees no metadata call and no write.
func TestWritableClients(t *testing.T) {
	needFilelock(t)
	e := newEnv(t)
	base, slowMnt, sfs := slowTree(t, e)
	mnt := filepath.Join(e.tmp, "mnt")
	_, summary := e.mount(slowMnt, mnt, "--writable", "--prefetch", "off")
	if !strings.Contains(summary, "writable") {
		t.Errorf("the summary does not say the mount is writable: %q", summary)
	}
	sfs.Reset()
	metadataStorm(t, mnt)

	lock := filepath.Join(mnt, "d1", "_builder.lock")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	holder := exec.CommandContext(ctx, python, "-c", holdLock, lock)
	stdin, _ := holder.StdinPipe()
	var held syncBuf
	holder.Stdout, holder.Stderr = &held, &held
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer holder.Wait()
	defer stdin.Close()
	waitFor(t, "the first process to take the lock", func() bool { return strings.Contains(held.String(), "held") })
	contender := exec.CommandContext(ctx, python, "-c", tryLock, lock)
	var got syncBuf
	contender.Stdout, contender.Stderr = &got, &got
	if err := contender.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second process to time out", func() bool { return strings.Contains(got.String(), "timeout") })
	stdin.Close()
	if err := contender.Wait(); err != nil || got.String() != "timeout\nacquired\n" {
		t.Errorf("contending for a filelock through the mount: %q %v", got.String(), err)
	}
	holder.Wait()

	rawFlock(t, filepath.Join(mnt, "d2", "sub", "f01.json.lock"))

	if out := runPy(t, tempRenameMmap, filepath.Join(mnt, "d3"), "arrow"); out != "ok\n" {
		t.Errorf("NamedTemporaryFile + rename + mmap: %q", out)
	}

	f05 := "d4/sub/f05.json"
	rewriteTrunc(t, filepath.Join(mnt, f05), "repaired")
	if b, _ := os.ReadFile(filepath.Join(mnt, f05)); string(b) != "repaired" {
		t.Errorf("a reader through the mount sees %q after the rewrite", b)
	}
	if b, _ := os.ReadFile(filepath.Join(base, f05)); string(b) != strings.Repeat("x", 50) {
		t.Errorf("the rewrite reached the source: %q", b)
	}

	metadataStorm(t, mnt)
	c := sfs.Counts()
	if c.Meta != 0 {
		t.Errorf("after mount the source served metadata calls: %v", c.Ops)
	}
	for _, op := range []string{"create", "write", "mkdir", "rename", "unlink", "setattr", "mknod", "symlink"} {
		if c.Ops[op] != 0 {
			t.Errorf("the source saw %d %s requests: %v", c.Ops[op], op, c.Ops)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "d1", "_builder.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock file reached the source: %v", err)
	}
	r := e.unmount(mnt)
	if !strings.Contains(r.stdout, "discarded") {
		t.Errorf("unmount without --push does not say the changes are discarded: %q", r.stdout)
	}
}

// rawFlock takes the lock the way filelock does, on two open file
// descriptions: the second must be refused while the first holds it.
func rawFlock(t *testing.T, p string) {
	t.Helper()
	const flags = unix.O_RDWR | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_CLOEXEC
	a, err := unix.Open(p, flags, 0o666)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	defer unix.Close(a)
	b, err := unix.Open(p, flags, 0o666)
	if err != nil {
		t.Fatalf("second open %s: %v", p, err)
	}
	defer unix.Close(b)
	if err := unix.Flock(a, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatalf("flock: %v", err)
	}
	if err := unix.Flock(b, unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK {
		t.Errorf("a second flock while the first is held: %v, want EWOULDBLOCK", err)
	}
	unix.Flock(a, unix.LOCK_UN)
	if err := unix.Flock(b, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Errorf("flock after the holder released: %v", err)
	}
}

// rewriteTrunc repairs a file in place, as EEGDash does its sidecars.
func rewriteTrunc(t *testing.T, p, content string) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		t.Fatalf("O_TRUNC rewrite of %s: %v", p, err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// syncBuf is a buffer a command writes while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writableSource is a plain directory tree for push tests.
func writableSource(t *testing.T, e *env, files map[string]string) string {
	t.Helper()
	src := filepath.Join(e.tmp, "src")
	writeFiles(t, src, 0o644, files)
	return src
}

// writeFiles writes files (path under dir: contents) with mode, making the
// directories on the way.
func writeFiles(t *testing.T, dir string, mode os.FileMode, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func fileIs(t *testing.T, p string, want []byte) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(b, want) {
		t.Errorf("%s: %d bytes (%v), want %d bytes of what was written through the mount", p, len(b), err, len(want))
	}
}

// noTemps fails if a push left a temporary in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), pushTemp) {
			t.Errorf("a push left %s", p)
		}
		return nil
	})
}

// TestPush pushes new, changed and locked files, a new directory and a
// symlink, and a file changed on the source since the snapshot.
func TestPush(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"keep.txt": "keep", "changed.txt": "v1",
		"conflict.txt": "v1", "sub/old.txt": "old"})
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt, "--writable")

	big := randomBytes(3<<20 + 17)
	os.MkdirAll(filepath.Join(mnt, "newdir", "deeper"), 0o755)
	for p, b := range map[string][]byte{"new.txt": []byte("new"), "newdir/deeper/big.bin": big,
		"changed.txt": []byte("v2 through the mount"), "conflict.txt": []byte("v2 through the mount"),
		"newdir/x.lock": nil, "ds.lock": nil} {
		if err := os.WriteFile(filepath.Join(mnt, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("newdir/deeper/big.bin", filepath.Join(mnt, "link"))
	os.Remove(filepath.Join(mnt, "sub", "old.txt"))
	// Another job lands its version after this mount's snapshot.
	os.WriteFile(filepath.Join(src, "conflict.txt"), []byte("v2 from another job"), 0o644)

	if r := e.run("status", mnt); r.code != 0 || !strings.Contains(r.stdout, "changed files") {
		t.Errorf("status of a writable mount does not count its changes: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	r := e.run("push", "--dry-run", mnt)
	if r.code != 13 || !strings.Contains(r.stdout, "copied\tnew.txt") || !strings.Contains(r.stdout, "would push") {
		t.Errorf("push --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(src, "new.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--dry-run wrote to the source: %v", err)
	}

	r = e.run("push", mnt)
	if r.code != 13 || !strings.Contains(r.stdout, "conflict\tconflict.txt") {
		t.Errorf("push with a conflict: exit %d, want 13\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "new.txt"), []byte("new"))
	fileIs(t, filepath.Join(src, "newdir/deeper/big.bin"), big)
	fileIs(t, filepath.Join(src, "changed.txt"), []byte("v2 through the mount"))
	fileIs(t, filepath.Join(src, "conflict.txt"), []byte("v2 from another job"))
	fileIs(t, filepath.Join(src, "keep.txt"), []byte("keep"))
	fileIs(t, filepath.Join(src, "sub/old.txt"), []byte("old"))
	if l, err := os.Readlink(filepath.Join(src, "link")); l != "newdir/deeper/big.bin" {
		t.Errorf("symlink in the source: %q %v", l, err)
	}
	for _, p := range []string{"ds.lock", "newdir/x.lock"} {
		if _, err := os.Lstat(filepath.Join(src, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("lock file %s was pushed: %v", p, err)
		}
	}
	noTemps(t, src)

	// Pushing again finds what it pushed in place; only the conflict stays.
	r = e.run("push", "--json", mnt)
	if r.code != 13 || !strings.Contains(r.stdout, `"copied": 0`) || !strings.Contains(r.stdout, `"conflicts": 1`) {
		t.Errorf("second push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = e.run("push", "--force", "--delete", mnt); r.code != 0 {
		t.Errorf("push --force --delete: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "conflict.txt"), []byte("v2 through the mount"))
	if _, err := os.Stat(filepath.Join(src, "sub/old.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--delete left sub/old.txt: %v", err)
	}

	os.WriteFile(filepath.Join(mnt, "last.txt"), []byte("last"), 0o644)
	r = e.run("unmount", "--push", mnt)
	if r.code != 0 || isMounted(mnt) {
		t.Fatalf("unmount --push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "last.txt"), []byte("last"))
	noTemps(t, src)
}

// TestPushConcurrentOnePath runs two pushes of different contents to one
// new path at once, from two mounts: one complete version lands, the other
// push reports the conflict.
func TestPushConcurrentOnePath(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"readme": "x"})
	var mnts [2]string
	var data [2][]byte
	for i := range mnts {
		mnts[i] = filepath.Join(e.tmp, fmt.Sprintf("mnt%d", i))
		e.mount(src, mnts[i], "--writable", "--cache-dir", filepath.Join(e.tmp, fmt.Sprintf("cache%d", i)))
		data[i] = randomBytes(16 << 20)
		os.MkdirAll(filepath.Join(mnts[i], "out"), 0o755)
		if err := os.WriteFile(filepath.Join(mnts[i], "out", "same.bin"), data[i], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cmds [2]*exec.Cmd
	var outs [2]bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for i := range cmds {
		cmds[i] = e.command(ctx, "push", mnts[i])
		cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	codes := map[int]int{}
	for _, c := range cmds {
		codes[exitCodeOf(t, c.Wait())]++
	}
	if ctx.Err() != nil {
		t.Fatalf("two pushes still running after %s: they hang", hangGuard)
	}
	if codes[0] != 1 || codes[13] != 1 {
		t.Errorf("exit codes %v, want one 0 and one 13\n%s\n%s", codes, outs[0].String(), outs[1].String())
	}
	got, _ := os.ReadFile(filepath.Join(src, "out", "same.bin"))
	if !bytes.Equal(got, data[0]) && !bytes.Equal(got, data[1]) {
		t.Errorf("the source holds %d bytes that are neither version", len(got))
	}
	noTemps(t, src)
	// The loser's unmount --push reports the conflict again, unmounts,
	// and keeps its version for a later push --force.
	for _, m := range mnts {
		r := e.run("unmount", "--push", m)
		if isMounted(m) || (r.code != 0 && (r.code != 13 || !strings.Contains(r.stdout, "kept"))) {
			t.Errorf("unmount --push %s: exit %d, mounted %v\n%s%s", m, r.code, isMounted(m), r.stdout, r.stderr)
		}
	}
}

// TestPushKill9 kills a push while it writes a large file: the source
// keeps the old file whole, and the next push lands the new one and
// removes the temporary the killed one left.
func TestPushKill9(t *testing.T) {
	e := newEnv(t)
	old := randomBytes(1 << 20)
	src := writableSource(t, e, map[string]string{"data/big.bin": string(old)})
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt, "--writable")
	fresh := randomBytes(256 << 20)
	if err := os.WriteFile(filepath.Join(mnt, "data", "big.bin"), fresh, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := e.command(ctx, "push", mnt)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(src, "data")
	// Kill as soon as the push is writing: a temporary exists, or the
	// target itself changed size (a push that wrote in place).
	var seen int64 = -1
	for seen < 0 && !processExited(cmd.Process.Pid) {
		ents, _ := os.ReadDir(dir)
		for _, d := range ents {
			fi, err := d.Info()
			switch {
			case err != nil:
			case strings.HasPrefix(d.Name(), pushTemp), d.Name() == "big.bin" && fi.Size() != int64(len(old)):
				seen = fi.Size()
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if seen < 0 {
		t.Fatal("the push finished before it was seen writing: nothing was killed mid-file")
	}
	t.Logf("killed with %d of %d bytes written", seen, len(fresh))
	fileIs(t, filepath.Join(src, "data", "big.bin"), old)

	if r := e.run("push", mnt); r.code != 0 {
		t.Fatalf("push after the kill: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "data", "big.bin"), fresh)
	noTemps(t, src)
	e.unmount(mnt)
}

// processExited reports whether pid is a zombie or gone, without reaping.
func processExited(pid int) bool {
	st := procStateOf(pid)
	return st == 0 || st == 'Z'
}

// TestPushReadOnlySource: a SOURCE that refuses writes fails the push
// with its own exit status and one line, and unmount --push keeps the
// mount and its changes.
func TestPushReadOnlySource(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"a": "a"})
	ro := filepath.Join(e.tmp, "ro")
	os.Mkdir(ro, 0o755)
	if err := unix.Mount(src, ro, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(ro, unix.MNT_DETACH)
	if err := unix.Mount("", ro, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(ro, mnt, "--writable")
	os.WriteFile(filepath.Join(mnt, "b"), []byte("b"), 0o644)
	r := e.run("unmount", "--push", mnt)
	if r.code != 14 || !strings.Contains(r.stderr, "read-only") || !isMounted(mnt) {
		t.Errorf("unmount --push to a read-only source: exit %d, mounted %v\n%s%s", r.code, isMounted(mnt), r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(mnt, "b")); string(b) != "b" {
		t.Errorf("the change is gone after a failed push: %q", b)
	}
	e.unmount(mnt)
}

// TestWritableConfinedToItsUser: a writable view lets other users in only
// as far as a read-only mount would. A private one (no --allow-other) is
// closed to them although overlayfs has no allow_other of its own; through
// a shared one, a file a user creates 0600 is theirs alone.
func TestWritableConfinedToItsUser(t *testing.T) {
	e := aclEnv(t)
	_, alice := newUser(t, "wra")
	_, bob := newUser(t, "wrb")
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "pub"), 0o755)
	os.Chmod(filepath.Join(src, "pub"), 0o777)
	os.WriteFile(filepath.Join(src, "pub", "readme"), []byte("hi"), 0o644)
	os.Chmod(e.tmp, 0o755)

	private := filepath.Join(e.tmp, "private")
	e.mount(src, private, "--writable", "--cache-dir", filepath.Join(e.tmp, "c1"))
	if out, stderr, err := readAs(t, bob, filepath.Join(private, "pub", "readme")); err == nil {
		t.Errorf("another user read through a private writable mount: %q %s", out, stderr)
	}
	if err := execAs(t, bob, "touch", filepath.Join(private, "pub", "planted")); err == nil {
		t.Errorf("another user wrote through a private writable mount")
	}
	e.unmount(private)

	shared := filepath.Join(e.tmp, "shared")
	e.mount(src, shared, "--writable", "--allow-other", "--cache-dir", filepath.Join(e.tmp, "c2"))
	secret := filepath.Join(shared, "pub", "alice.txt")
	if err := execAs(t, alice, "sh", "-c", "umask 077; echo secret > "+secret); err != nil {
		t.Fatalf("alice writing through the shared mount: %v", err)
	}
	expectAccess(t, alice, "alice", "secret\n", secret)
	expectAccess(t, bob, "bob", "denied", secret)
	expectAccess(t, bob, "bob", "hi", filepath.Join(shared, "pub", "readme"))
	e.unmount(shared)
}

func execAs(t *testing.T, cred *syscall.Credential, name string, args ...string) error {
	t.Helper()
	_, _, err := runAsUser(t, cred, name, args...)
	return err
}

// TestUnprivilegedWritable: a user who may not mount overlayfs gets the
// writable view from fuse-overlayfs, and pushes into a SOURCE of theirs.
func TestUnprivilegedWritable(t *testing.T) {
	userFUSE(t)
	_, cred := newUser(t, "unprivrw")
	if _, err := exec.LookPath("fuse-overlayfs"); err != nil {
		t.Fatal("fuse-overlayfs is needed (apt-get install fuse-overlayfs)")
	}
	base := traversableDir(t, "cachefs-unpriv-rw-")
	src, mnt, home := filepath.Join(base, "src"), filepath.Join(base, "mnt"), filepath.Join(base, "home")
	os.MkdirAll(filepath.Join(src, "ds"), 0o755)
	os.WriteFile(filepath.Join(src, "ds", "info.json"), []byte("{}"), 0o644)
	for _, d := range []string{src, filepath.Join(src, "ds"), filepath.Join(src, "ds", "info.json"), mnt, home} {
		os.MkdirAll(d, 0o755)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}
	e := &env{t: t, tmp: home, cred: cred}
	_, summary := e.mount(src, mnt, "--writable")
	if !strings.Contains(summary, "fuse-overlayfs") {
		t.Errorf("an unprivileged writable mount should use fuse-overlayfs: %q", summary)
	}
	if opts := mountOptionsAt(t, mnt); strings.Contains(opts, "allow_other") {
		t.Errorf("a private writable view is open to other users: %s", opts)
	}
	if r := e.run("status", mnt); r.code != 0 || !strings.Contains(r.stdout, "writable") {
		t.Errorf("status as the user: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := execAs(t, cred, "sh", "-c", "echo new > "+filepath.Join(mnt, "ds", "new.json")); err != nil {
		t.Fatalf("writing as the user: %v", err)
	}
	if _, err := os.Stat(filepath.Join(src, "ds", "new.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the write reached the source before a push: %v", err)
	}
	r := e.run("unmount", "--push", mnt)
	if r.code != 0 || isMounted(mnt) {
		t.Fatalf("unmount --push as the user: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "ds", "new.json"), []byte("new\n"))
}

// TestWritableKill9ThenRemount: a daemon killed with its view mounted
// leaves the changes on the node; unmount cleans both layers, and the next
// writable mount over the same cache directory adopts the changes, which
// push then lands.
func TestWritableKill9ThenRemount(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"a": "a"})
	mnt, cache := filepath.Join(e.tmp, "mnt"), filepath.Join(e.tmp, "cache")
	pid, _ := e.mount(src, mnt, "--writable", "--cache-dir", cache)
	os.WriteFile(filepath.Join(mnt, "survivor"), []byte("kept"), 0o644)
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 10*time.Second)
	r := e.run("unmount", mnt)
	if r.code != 0 || isMounted(mnt) || isMounted(filepath.Join(cache, "writable", "lower")) {
		t.Fatalf("unmount after kill -9: exit %d, view mounted %v\n%s%s", r.code, isMounted(mnt), r.stdout, r.stderr)
	}
	e.mount(src, mnt, "--writable", "--cache-dir", cache)
	if b, _ := os.ReadFile(filepath.Join(mnt, "survivor")); string(b) != "kept" {
		t.Errorf("the changes of the killed mount are gone: %q", b)
	}
	if r := e.run("unmount", "--push", mnt); r.code != 0 {
		t.Fatalf("unmount --push: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	fileIs(t, filepath.Join(src, "survivor"), []byte("kept"))
}

// TestWritableFullUpper: when the cache disk fills, the writer gets ENOSPC
// and the mount keeps serving reads.
func TestWritableFullUpper(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"a": strings.Repeat("a", 100_000)})
	cache := filepath.Join(e.tmp, "cache")
	os.Mkdir(cache, 0o700)
	if err := unix.Mount("tmpfs", cache, "tmpfs", 0, "size=4m,mode=0700"); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(cache, unix.MNT_DETACH)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt, "--writable", "--cache-dir", cache)
	err := os.WriteFile(filepath.Join(mnt, "big"), randomBytes(8<<20), 0o644)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("writing more than the cache disk holds: %v, want ENOSPC", err)
	}
	fileIs(t, filepath.Join(mnt, "a"), []byte(strings.Repeat("a", 100_000)))
	os.Remove(filepath.Join(mnt, "big"))
	e.unmount(mnt)
}

// mountOptionsAt returns the mount and super options of the topmost mount
// at mnt, from /proc/self/mountinfo.
func mountOptionsAt(t *testing.T, mnt string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == mnt {
			opts = f[5] + " " + f[len(f)-1]
		}
	}
	// No entry has no options: a check for an option's absence would
	// pass without looking.
	if opts == "" {
		t.Fatalf("%s is not in the mount table", mnt)
	}
	return opts
}

// TestWritableKeep: unmount --keep keeps the changes for the next mount
// over the same cache directory; a plain unmount then discards them.
func TestWritableKeep(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"a": "a"})
	mnt, cache := filepath.Join(e.tmp, "mnt"), filepath.Join(e.tmp, "cache")
	e.mount(src, mnt, "--writable", "--cache-dir", cache)
	os.WriteFile(filepath.Join(mnt, "later"), []byte("later"), 0o644)
	r := e.run("unmount", "--keep", mnt)
	if r.code != 0 || !strings.Contains(r.stdout, "kept 1 changed files") {
		t.Fatalf("unmount --keep: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	e.mount(src, mnt, "--writable", "--cache-dir", cache)
	if b, _ := os.ReadFile(filepath.Join(mnt, "later")); string(b) != "later" {
		t.Errorf("kept change not seen by the next mount: %q", b)
	}
	if r := e.unmount(mnt); !strings.Contains(r.stdout, "discarded 1 changed files") {
		t.Errorf("unmount: %q", r.stdout)
	}
	e.mount(src, mnt, "--writable", "--cache-dir", cache)
	if _, err := os.Stat(filepath.Join(mnt, "later")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a discarded change came back: %v", err)
	}
	e.unmount(mnt)
}

// TestWritableUnavailable: a user who may not mount overlayfs and has no
// fuse-overlayfs gets one line and exit 6, and nothing is mounted.
func TestWritableUnavailable(t *testing.T) {
	userFUSE(t)
	_, cred := newUser(t, "nowr")
	base := traversableDir(t, "cachefs-unpriv-nowr-")
	src, mnt, home := filepath.Join(base, "src"), filepath.Join(base, "mnt"), filepath.Join(base, "home")
	for _, d := range []string{src, mnt, home} {
		os.MkdirAll(d, 0o755)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}
	// No fuse-overlayfs on this PATH.
	e := &env{t: t, tmp: home, cred: cred, extraEnv: []string{"PATH=/nonexistent"}}
	r := e.run("mount", "--writable", src, mnt)
	out := r.stdout + r.stderr
	if r.code != 6 || !strings.Contains(out, "fuse-overlayfs") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("--writable without an overlay: exit %d\n%s", r.code, out)
	}
	if isMounted(mnt) {
		t.Errorf("%s mounted after a refused --writable", mnt)
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
}

// TestWritableSigterm: SIGTERM at the time limit takes down the view and
// the read-only layer below it, and the daemon exits.
func TestWritableSigterm(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"a": "a"})
	mnt, cache := filepath.Join(e.tmp, "mnt"), filepath.Join(e.tmp, "cache")
	pid, _ := e.mount(src, mnt, "--writable", "--cache-dir", cache)
	syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, 20*time.Second) {
		t.Fatal("the daemon outlived SIGTERM")
	}
	if isMounted(mnt) || isMounted(filepath.Join(cache, "writable", "lower")) {
		t.Errorf("SIGTERM left the view (%v) or the read-only layer (%v) mounted", isMounted(mnt), isMounted(filepath.Join(cache, "writable", "lower")))
	}
}
