package integration

// The other users of a shared node, and what an ordinary user needs to
// mount: each test creates the accounts it needs and removes them, and
// puts /dev/fuse back as it found it.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// userPrefix starts the name of every account the suite creates; .ci/run
// looks for accounts with it after the run.
const userPrefix = "cft"

// newUser creates an ordinary account for the test and removes it when the
// test ends. The name carries role and this process's pid, so concurrent
// runs never share an account and a leftover one says which run left it.
func newUser(t *testing.T, role string) (name string, cred *syscall.Credential) {
	t.Helper()
	needRoot(t, "creating users")
	name = fmt.Sprintf("%s%d-%s", userPrefix, os.Getpid(), role)
	if _, err := user.Lookup(name); err == nil {
		t.Fatalf("user %s exists already", name)
	}
	if err := retryLocked("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := retryLocked("userdel", name); err != nil {
			t.Error(err)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return name, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// retryLocked runs useradd or userdel, again while another process holds
// the lock on /etc/passwd (other test binaries create users at the same
// time).
func retryLocked(name string, args ...string) error {
	for try := 0; ; try++ {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err == nil {
			return nil
		}
		if try == 100 || !strings.Contains(string(out), "lock") {
			return fmt.Errorf("%s %v: %v: %s", name, args, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// needRoot fails the test in CI (which runs as root) and skips it
// elsewhere when the process is not root.
func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s needs root, and CI runs as root", why)
	}
	t.Skipf("%s needs root", why)
}

// userFUSE gives ordinary users what distributions give them: fusermount3
// and a /dev/fuse they may open (0666; this machine has it 0600). The
// mode is put back when the test ends.
func userFUSE(t *testing.T) {
	t.Helper()
	needRoot(t, "changing /dev/fuse")
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Fatal("fusermount3 is missing: install Debian's fuse3")
	}
	var st unix.Stat_t
	if err := unix.Stat("/dev/fuse", &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&0o006 == 0o006 {
		return
	}
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Chmod("/dev/fuse", os.FileMode(st.Mode&0o7777)); err != nil {
			t.Errorf("putting /dev/fuse back to %o: %v", st.Mode&0o7777, err)
		}
	})
}

// traversableDir makes a directory other users can pass through, which a
// test that runs commands as them needs (t.TempDir is 0700), and removes
// it when the test ends.
func traversableDir(t *testing.T, prefix string) string {
	t.Helper()
	base, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return base
}

// runAsUser runs name as cred (nil: as the test), from "/", and returns
// what it wrote to stdout and to stderr. A command still running after
// hangGuard, such as a read through a hung mount, is killed and fails the
// test.
func runAsUser(t *testing.T, cred *syscall.Credential, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.Dir = "/"
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v as %s still running after %s: it hangs", name, args, who(cred), hangGuard)
	}
	return out.String(), errb.String(), err
}

func who(cred *syscall.Credential) string {
	if cred == nil {
		return "the test's user"
	}
	return fmt.Sprintf("uid %d", cred.Uid)
}

// combinedAs is runAsUser with both outputs in one string.
func combinedAs(t *testing.T, cred *syscall.Credential, name string, args ...string) (string, error) {
	t.Helper()
	out, errb, err := runAsUser(t, cred, name, args...)
	return out + errb, err
}
