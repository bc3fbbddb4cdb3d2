package integration

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

const testUser = "cachefs-test"

// requireUnprivileged sets up what a normal user on a cluster node has: an
// account, a world-usable /dev/fuse, and fusermount3. In CI, missing pieces
// fail the test instead of skipping it.
func requireUnprivileged(t *testing.T) *syscall.Credential {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") != "" {
			t.Fatalf("unprivileged mount test cannot run in CI: %s", what)
		}
		t.Skipf("unprivileged mount test needs %s", what)
	}
	if os.Geteuid() != 0 {
		missing("root to create the test user")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		missing("fusermount3 (Debian package fuse3)")
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		if out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput(); err != nil {
			missing("useradd: " + strings.TrimSpace(string(out)))
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		t.Fatal(err)
	}
	// Distributions ship /dev/fuse 0666; this machine has it 0600. Open it
	// up for the test's run only.
	if st.Mode&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", os.FileMode(st.Mode&0o7777)) })
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

func TestUnprivilegedMount(t *testing.T) {
	cred := requireUnprivileged(t)
	base, err := os.MkdirTemp("", "cachefs-unpriv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	src := filepath.Join(base, "src")
	os.MkdirAll(filepath.Join(src, "data"), 0o755)
	os.WriteFile(filepath.Join(src, "data", "run1.json"), []byte(`{"ok":true}`), 0o644)
	// A directory the user cannot read: the walk must show it empty, count
	// it, and carry on.
	os.MkdirAll(filepath.Join(src, "secret", "inner"), 0o755)
	os.Chmod(filepath.Join(src, "secret"), 0o700)
	mnt := filepath.Join(base, "mnt")
	home := filepath.Join(base, "home")
	for _, d := range []string{mnt, home} {
		os.Mkdir(d, 0o755)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}

	e := &env{t: t, tmp: home, cred: cred}
	pid, summary := e.mount(src, mnt)
	if !strings.Contains(summary, "1 unreadable") {
		t.Errorf("summary should count the unreadable directory: %q", summary)
	}
	as := func(name string, args ...string) (string, error) {
		c := exec.Command(name, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		c.Dir = "/"
		out, err := c.CombinedOutput()
		return string(out), err
	}
	if out, err := as("cat", filepath.Join(mnt, "data", "run1.json")); err != nil || out != `{"ok":true}` {
		t.Errorf("read as the user: %q %v", out, err)
	}
	if out, err := as("ls", "-a", filepath.Join(mnt, "secret")); err == nil {
		t.Errorf("the kernel let the user list a 0700 directory of root's: %q", out)
	}
	r := e.run("unmount", mnt)
	if r.code != 0 || isMounted(mnt) {
		t.Fatalf("unmount as the user: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if !waitGone(pid, 10e9) {
		t.Error("daemon still running after unmount")
	}
}
