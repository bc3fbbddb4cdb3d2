package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/mounttable"

	"golang.org/x/sys/unix"
)

// binary is the cachefs executable built once for the whole suite.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if mnt := os.Getenv(slowfsServeEnv); mnt != "" {
		return serveSlowfs(mnt)
	}
	// Without FUSE no test here can prove anything: fail, never pass empty.
	if _, err := os.Stat("/dev/fuse"); err != nil {
		fmt.Fprintln(os.Stderr, "integration: /dev/fuse is missing; FUSE tests cannot run")
		return 1
	}
	dir, err := os.MkdirTemp("", "cachefs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// World-readable so the unprivileged test user can run it.
	os.Chmod(dir, 0o755)
	binary = filepath.Join(dir, "cachefs")
	build := exec.Command("go", "build", "-race", "-o", binary, "../cmd/cachefs")
	if os.Getenv("CACHEFS_NORACE") != "" {
		build = exec.Command("go", "build", "-o", binary, "../cmd/cachefs")
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: build:", err)
		return 1
	}
	code := m.Run()
	if left := leftoverDaemons(); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "integration: cachefs daemons left running: %v\n", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		code = 1
	}
	return code
}

// leftoverDaemons lists processes running the suite's binary.
func leftoverDaemons() []int { return processesRunning(binary) }

// processesRunning lists the live processes whose executable is exe.
func processesRunning(exe string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && path == exe && processAlive(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// processAlive and isMounted keep the tests' short names for the shared
// /proc checks.
func processAlive(pid int) bool { return mounttable.ProcessAlive(pid) }

func isMounted(mnt string) bool { return mounttable.IsMounted(mnt) }

// env is the environment a test's cachefs commands run with: a private
// TMPDIR so cache directories and runtime records never mix between tests.
type env struct {
	t   testing.TB
	tmp string
	// cred, when set, runs commands as that user.
	cred *syscall.Credential
	// defaultRuntime leaves the runtime directory to cachefs's default
	// (root's is /run/cachefs, shared by every root mount on the machine)
	// instead of one of the test's own.
	defaultRuntime bool
	// runtimeDir is XDG_RUNTIME_DIR for the commands; empty unless a
	// test sets it.
	runtimeDir string
	// extraEnv is added last to the commands' environment, overriding.
	extraEnv []string
}

// environ is the environment of every command the test runs: its own
// TMPDIR and, for root, its own runtime directory, so that tests never see
// each other's cache directories or mount records. A user's default
// runtime directory is already under TMPDIR.
func (e *env) environ() []string {
	rt := ""
	if e.cred == nil && !e.defaultRuntime {
		rt = filepath.Join(e.tmp, "run")
	}
	env := append(os.Environ(), "TMPDIR="+e.tmp, "XDG_RUNTIME_DIR="+e.runtimeDir, "CACHEFS_RUNTIME_DIR="+rt)
	return append(env, e.extraEnv...)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tmp := t.TempDir()
	return &env{t: t, tmp: tmp}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs cachefs and returns how it exited. A command still running
// after cmdDeadline is killed and fails the test: a hang must not run into
// go test's -timeout, which kills the binary before any cleanup.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runWithin(cmdDeadline, args...)
}

// cmdDeadline is far beyond what any command of the suite takes when it
// works.
const cmdDeadline = 5 * time.Minute

func (e *env) runWithin(d time.Duration, args ...string) result {
	e.t.Helper()
	e.forgetMountsOf(args)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("cachefs %v still running after %s: it hangs", args, d)
	}
	return result{code: exitCodeOf(e.t, err), stdout: out.String(), stderr: errb.String()}
}

// command is the exec.Cmd that e.run runs, killed when ctx ends.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = e.environ()
	if e.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: e.cred}
		cmd.Dir = "/"
	}
	return cmd
}

// pidRe reads the daemon pid from a human summary, for the commands that
// print no JSON.
var pidRe = regexp.MustCompile(`daemon pid (\d+)`)

// mount runs `cachefs mount --json` and expects it to serve; e.run has
// arranged for the mount and its daemon to be gone when the test ends. It
// returns the daemon's pid from the JSON object on stdout, and the summary
// line from stderr.
func (e *env) mount(src, mnt string, extra ...string) (pid int, summary string) {
	e.t.Helper()
	r := e.run(append([]string{"mount", "--json", src, mnt}, extra...)...)
	if r.code != 0 {
		e.t.Fatalf("cachefs mount exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	var ready daemon.Ready
	if err := json.Unmarshal([]byte(r.stdout), &ready); err != nil || ready.Schema != daemon.ReadySchema || ready.Pid <= 0 {
		e.t.Fatalf("mount --json printed %q (%v): want one object of schema %d with the daemon pid", r.stdout, err, daemon.ReadySchema)
	}
	if ready.Mountpoint != mnt {
		if real, err := filepath.EvalSymlinks(mnt); err != nil || real != ready.Mountpoint {
			e.t.Fatalf("mount --json names mountpoint %q, want %q", ready.Mountpoint, mnt)
		}
	}
	if !isMounted(mnt) {
		e.t.Fatalf("cachefs mount returned 0 but %s is not in /proc/self/mountinfo", mnt)
	}
	return ready.Pid, r.stderr
}

// cleanupMount removes a test's mount and daemon by force if the test left
// them, and fails the test if it had to.
func cleanupMount(t testing.TB, mnt string, pid int) {
	if isMounted(mnt) {
		t.Errorf("test left %s mounted; detaching", mnt)
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if waitGone(pid, 10*time.Second) {
		return
	}
	t.Errorf("daemon %d still running after its mount went; killing it", pid)
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 10*time.Second)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// unmount runs `cachefs unmount` and expects success.
func (e *env) unmount(mnt string) result {
	e.t.Helper()
	r := e.run("unmount", mnt)
	if r.code != 0 {
		e.t.Fatalf("cachefs unmount exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if isMounted(mnt) {
		e.t.Fatalf("%s still mounted after unmount", mnt)
	}
	return r
}
