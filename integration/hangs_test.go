package integration

// Nothing the CLI does waits on a stuck daemon or a hung source without a
// deadline; signals do what docs/operations.md says; and the command line
// reads as documented. A stuck daemon is one stopped with SIGSTOP; a hung
// source is the slow-source fixture, in a process of its own, stopped.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hangGuard only detects a hang: every command here returns in seconds
// when it works, and used to wait forever.
const hangGuard = 90 * time.Second

// runGuarded is e.run for a command that might hang: it is killed, and the
// test fails, once hangGuard has passed.
func (e *env) runGuarded(args ...string) result {
	e.t.Helper()
	return e.runWithin(hangGuard, args...)
}

func exitCodeOf(t testing.TB, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("running cachefs: %v", err)
	return -1
}

// stopProcess stops pid with SIGSTOP until the test ends (or the test
// continues it earlier), and waits until it is stopped.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Cleanups run last first: this one runs before those that wait for
	// the process to exit.
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
	waitFor(t, fmt.Sprintf("process %d to stop", pid), func() bool { return procStateOf(pid) == 'T' })
}

// procStat is the fields of /proc/pid/stat after the command's name, which
// may hold spaces and parentheses: [0] the state, [1] the parent's pid. It
// is nil once the process is gone.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

func procStateOf(pid int) byte {
	if f := procStat(pid); len(f) > 0 {
		return f[0][0]
	}
	return 0
}

// waitFor polls cond until it holds, failing the test after hangGuard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", hangGuard, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// smallSource makes a source directory with one file, f.
func smallSource(t *testing.T, e *env) (src string) {
	src = filepath.Join(e.tmp, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// recSource makes a source directory, e.tmp/dir, with one file, rec.
func recSource(t *testing.T, e *env, dir string, rec []byte) string {
	t.Helper()
	src := filepath.Join(e.tmp, dir)
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "rec"), rec, 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// stoppedMount is a mount of smallSource whose daemon is stopped with
// SIGSTOP until the test continues it (or ends).
type stoppedMount struct {
	e        *env
	src, mnt string
	pid      int
}

func mountStopped(t *testing.T) *stoppedMount {
	t.Helper()
	e := newEnv(t)
	s := &stoppedMount{e: e, src: smallSource(t, e), mnt: filepath.Join(e.tmp, "mnt")}
	s.pid, _ = e.mount(s.src, s.mnt)
	stopProcess(t, s.pid)
	return s
}

// resume continues the daemon and, if its mount is still there, unmounts
// it; else checks that the daemon exits.
func (s *stoppedMount) resume(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if isMounted(s.mnt) {
		s.e.unmount(s.mnt)
	} else if !waitGone(s.pid, hangGuard) {
		t.Error("the daemon did not exit once continued")
	}
}

// unmountStopped runs cachefs unmount with args on a stopped daemon's
// mount, checks the exit code and that the mount is gone, and continues
// the daemon.
func unmountStopped(t *testing.T, want int, args ...string) result {
	t.Helper()
	s := mountStopped(t)
	start := time.Now()
	r := s.e.runGuarded(append(append([]string{"unmount"}, args...), s.mnt)...)
	t.Logf("unmount %v of a stopped daemon took %v", args, time.Since(start).Round(time.Millisecond))
	if r.code != want || isMounted(s.mnt) {
		t.Fatalf("unmount %v of a stopped daemon: exit %d (want %d), mounted %v\n%s%s", args, r.code, want, isMounted(s.mnt), r.stdout, r.stderr)
	}
	s.resume(t)
	return r
}

func TestUnmountLazyOfStoppedDaemon(t *testing.T) {
	if r := unmountStopped(t, 0, "--lazy"); !strings.Contains(r.stdout, "stopped") {
		t.Errorf("unmount --lazy should say the daemon is stopped: %q", r.stdout)
	}
}

// The kernel unmounts without asking the daemon; the daemon cannot exit
// while stopped, so the wait for it times out.
func TestUnmountTimeoutOfStoppedDaemon(t *testing.T) {
	if r := unmountStopped(t, 10, "--timeout", "3s"); !strings.Contains(r.stderr, "stopped") {
		t.Errorf("the error should say the daemon is stopped: %q", r.stderr)
	}
}

// wantRefused runs cachefs with args and checks that it exits with code,
// saying says, and leaves the stopped daemon's mount in place.
func (s *stoppedMount) wantRefused(t *testing.T, code int, says string, args ...string) {
	t.Helper()
	r := s.e.runGuarded(args...)
	if r.code != code || !strings.Contains(r.stderr, says) {
		t.Errorf("cachefs %v on a stopped daemon's mount: exit %d (want %d, %q)\n%s%s", args, r.code, code, says, r.stdout, r.stderr)
	}
	if !isMounted(s.mnt) {
		t.Errorf("cachefs %v took the stopped daemon's mount away", args)
	}
}

func TestMountOverStoppedDaemon(t *testing.T) {
	s := mountStopped(t)
	s.wantRefused(t, 5, "already mounted", "mount", s.src, s.mnt, "--cache-dir", filepath.Join(s.e.tmp, "cache2"))
	s.resume(t)
}

func TestControlOfStoppedDaemon(t *testing.T) {
	s := mountStopped(t)
	for _, args := range [][]string{{"status", s.mnt}, {"warm", s.mnt}} {
		r := s.e.runGuarded(args...)
		if r.code != 6 || !strings.Contains(r.stderr, "does not answer") && !strings.Contains(r.stderr, "stopped answering") {
			t.Errorf("cachefs %v on a stopped daemon: exit %d (want 6)\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
	s.resume(t)
}

// waitsOnFUSE reports whether a thread of pid waits for a FUSE server's
// answer.
func waitsOnFUSE(pid int) bool {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/wchan", pid))
	for _, w := range tasks {
		if b, _ := os.ReadFile(w); strings.Contains(string(b), "request_wait_answer") {
			return true
		}
	}
	return false
}

// TestMountInterruptedOnHungSource: Ctrl-C, SIGTERM or SIGHUP to a mount
// whose walk waits on a source that does not answer ends it with exit 130
// and one line, nothing mounted and no daemon left.
func TestMountInterruptedOnHungSource(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) { interruptHungMount(t, sig) })
	}
}

func interruptHungMount(t *testing.T, sig syscall.Signal) {
	e := newEnv(t)
	data := smallSource(t, e)
	slow := filepath.Join(e.tmp, "slow")
	mnt := filepath.Join(e.tmp, "mnt")
	for _, d := range []string{slow, mnt} {
		os.Mkdir(d, 0o755)
	}
	stopProcess(t, startSlowfs(t, data, slow))

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	args := []string{"mount", slow, mnt, "--cache-dir", filepath.Join(e.tmp, "cache")}
	e.forgetMountsOf(args)
	cmd := e.command(ctx, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The daemon, or the command before it starts one, blocks on the
	// source: either way the signal comes while the mount waits on it.
	waitFor(t, "the mount to wait on the hung source", func() bool {
		if waitsOnFUSE(cmd.Process.Pid) {
			return true
		}
		for _, pid := range e.daemons() {
			if waitsOnFUSE(pid) {
				return true
			}
		}
		return false
	})
	sent := time.Now()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	code := exitCodeOf(t, cmd.Wait())
	t.Logf("cachefs mount returned %v after %v", time.Since(sent).Round(time.Millisecond), sig)
	if ctx.Err() != nil {
		t.Fatalf("cachefs mount ignored %v for %s", sig, hangGuard)
	}
	if code != 130 || strings.Count(errb.String(), "\n") != 1 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("interrupted mount: exit %d (want 130 and one line)\n%s%s", code, out.String(), errb.String())
	}
	if isMounted(mnt) {
		t.Error("an interrupted mount left the mountpoint mounted")
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
	waitFor(t, "the daemon to end after the interrupted mount", func() bool { return len(e.daemons()) == 0 })
}

func TestDaemonOutlivesSignals(t *testing.T) {
	e := newEnv(t)
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7 / 3)
	}
	src := recSource(t, e, "src", want)
	mnt := filepath.Join(e.tmp, "mnt")
	cache := filepath.Join(e.tmp, "cache")
	pid, _ := e.mount(src, mnt, "--cache-dir", cache, "--prefetch", "off", "--read-ahead", "0")

	f, err := os.Open(filepath.Join(mnt, "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := f.ReadAt(got[:1<<20], 0); err != nil {
		t.Fatal(err)
	}
	for _, sig := range []syscall.Signal{syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGXCPU, syscall.SIGXFSZ,
		syscall.SIGVTALRM, syscall.SIGIO, syscall.SIGPWR, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2} {
		if err := syscall.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	// The daemon handles signals in the order they came: once the last
	// one is in the log, all were dealt with.
	logFile := filepath.Join(cache, "cachefs.log")
	waitFor(t, "the daemon to log SIGUSR2", func() bool {
		b, _ := os.ReadFile(logFile)
		return strings.Contains(string(b), "signal=SIGUSR2") || !processAlive(pid)
	})
	b, _ := os.ReadFile(logFile)
	if !strings.Contains(string(b), "status: served") || !strings.Contains(string(b), "signal=SIGHUP") {
		t.Errorf("the log should have SIGUSR1's status line and a line for SIGHUP:\n%s", b)
	}
	if _, err := f.ReadAt(got[1<<20:], 1<<20); err != nil {
		t.Fatalf("reading on after the signals: %v", err)
	}
	if string(got) != string(want) {
		t.Error("bytes read across the signals differ from the source")
	}
	if !processAlive(pid) || !isMounted(mnt) {
		t.Fatal("the daemon or its mount is gone")
	}
	f.Close()
	e.unmount(mnt)
}

func TestPassthroughValueAfterSpace(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	for _, c := range []struct {
		value string
		want  bool
		says  string
	}{
		{"off", false, "--passthrough=off"},
		{"on", true, "passthrough on"},
	} {
		mnt := filepath.Join(e.tmp, "mnt-"+c.value)
		e.mount(src, mnt, "--cache-dir", filepath.Join(e.tmp, "cache-"+c.value), "--passthrough", c.value)
		m := statusOf(t, e, mnt)
		if mode, _ := m["open_mode"].(string); m["passthrough"] != c.want || !strings.Contains(mode, c.says) {
			t.Errorf("--passthrough %s: passthrough %v, open mode %q", c.value, m["passthrough"], mode)
		}
		e.unmount(mnt)
	}
}

func TestWarmPaths(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	for _, d := range []string{"a/sub", "b"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	for _, f := range []string{"a/x", "a/sub/y", "b/z"} {
		os.WriteFile(filepath.Join(src, f), []byte(f), 0o644)
	}
	os.Symlink("a", filepath.Join(src, "link"))
	os.Symlink("/etc", filepath.Join(src, "out"))
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)

	for _, c := range []struct{ path, says string }{
		{"../../etc", "leaves the mount"},
		{"/etc", "not inside the mount"},
		{"a/../../..", "leaves the mount"},
		{"link", "symbolic link"},
		{"link/x", "symbolic link"},
		{"out", "symbolic link"},
		{"a/x/y", "not a directory"},
		{"nope", "no such file"},
		{strings.Repeat("n", 300), "longer than 255 bytes"},
	} {
		r := e.runGuarded("warm", mnt, c.path)
		if r.code != 2 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("warm %q: exit %d (want 2, one line saying %q, nothing on stdout)\nstdout: %q\nstderr: %q", c.path, r.code, c.says, r.stdout, r.stderr)
		}
	}
	for _, c := range []struct{ path, says string }{
		{"a", "2 of 2 files"},
		{"a/sub/..", "2 of 2 files"},
		{filepath.Join(mnt, "b"), "1 of 1 files"},
	} {
		r := e.runGuarded("warm", mnt, c.path)
		if r.code != 0 || !strings.Contains(r.stdout, c.says) {
			t.Errorf("warm %q: exit %d, want 0 and %q\n%s%s", c.path, r.code, c.says, r.stdout, r.stderr)
		}
	}
	e.unmount(mnt)
}

func TestFusermountReasonShown(t *testing.T) {
	if b, err := os.ReadFile("/etc/fuse.conf"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(l) == "user_allow_other" {
				t.Fatal("/etc/fuse.conf allows allow_other to every user; this test needs it refused")
			}
		}
	}
	userFUSE(t)
	name, cred := newUser(t, "hangs")
	base := traversableDir(t, "cachefs-hangs-")
	src := filepath.Join(base, "src")
	os.Mkdir(src, 0o755)
	mnt := filepath.Join(base, "mnt")
	home := filepath.Join(base, "home")
	for _, d := range []string{mnt, home} {
		os.Mkdir(d, 0o755)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}
	e := &env{t: t, tmp: home, cred: cred}
	r := e.runGuarded("mount", src, mnt, "--allow-other")
	if isMounted(mnt) {
		unix.Unmount(mnt, unix.MNT_DETACH)
		t.Fatal("--allow-other without user_allow_other mounted")
	}
	t.Logf("cachefs mount --allow-other as %s: exit %d: %s", name, r.code, r.stderr)
	if r.code != 6 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "fusermount3: option allow_other only allowed if 'user_allow_other' is set") || strings.Contains(r.stderr, "exited with code") {
		t.Errorf("want exit 6 and fusermount3's reason on one line; got exit %d:\n%s", r.code, r.stderr)
	}
}
