package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// runTree builds a small source tree with contents worth checking.
func runTree(t *testing.T, dir string) {
	t.Helper()
	for i := 0; i < 20; i++ {
		p := filepath.Join(dir, fmt.Sprintf("sub-%02d", i%4), fmt.Sprintf("run-%02d.bin", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte(fmt.Sprintf("run %d ", i)), 1000*(i+1))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// checksums is the script a job runs to list the checksum of every file
// below the directory in $1.
const checksums = `cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum`

func sumTree(t *testing.T, dir string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", checksums, "sh", dir).Output()
	if err != nil {
		t.Fatalf("checksums of %s: %v", dir, err)
	}
	return string(out)
}

// startRun starts `cachefs run SOURCE MOUNTPOINT ...` in the background and returns it with its
// outputs; the test's cleanup kills it and its group if the test left it.
func (e *env) startRun(args ...string) (*exec.Cmd, *syncBuf, *syncBuf) {
	e.t.Helper()
	cmd := exec.Command(binary, append([]string{"run"}, args...)...)
	cmd.Env = e.environ()
	var out, errb syncBuf
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			e.t.Errorf("cachefs run %d still running at the end of the test; killing it", cmd.Process.Pid)
			cmd.Process.Kill()
			cmd.Wait()
		}
		if mnt := args[1]; isMounted(mnt) {
			e.t.Errorf("test left %s mounted; detaching", mnt)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return cmd, &out, &errb
}

// waitRun waits for a cachefs run the test started; one still running
// after cmdDeadline hangs: it is killed and fails the test.
func waitRun(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(cmdDeadline):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("cachefs run still running after %s: it hangs", cmdDeadline)
		return nil
	}
}

// waitFile polls for a file that a job's command writes when it reaches a
// point, with a deadline only to detect a hang.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitContent polls until path holds want, with a deadline only to
// detect a hang.
func waitContent(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, _ := os.ReadFile(path)
		if string(got) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %q", path, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// daemonOf reads the daemon pid from run's summary on stderr.
func daemonOf(t *testing.T, stderr string) int {
	t.Helper()
	m := pidRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no daemon pid in run's stderr: %q", stderr)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

func TestRunReadsTreeAndExitsWithStatus(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	want := sumTree(t, src)
	script := `[ "$HF_HOME" = "$CACHEFS_MOUNTPOINT" ] && [ "$EEGDASH_CACHE_DIR" = "$CACHEFS_MOUNTPOINT" ] || exit 99
` + checksums + `
exit 3`
	r := e.run("run", src, mnt, "--env", "HF_HOME", "--env", "EEGDASH_CACHE_DIR", "--", "sh", "-c", script, "sh", mnt)
	if r.code != 3 {
		t.Fatalf("cachefs run exited %d, want the command's 3\nstderr: %s", r.code, r.stderr)
	}
	if r.stdout != want {
		t.Fatalf("the command's stdout (checksums through the mount) differs from the source's:\n%s\nwant:\n%s", r.stdout, want)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted after cachefs run returned", mnt)
	}
	if pid := daemonOf(t, r.stderr); processAlive(pid) {
		t.Fatalf("daemon %d still running after cachefs run returned", pid)
	}
	if !strings.Contains(r.stderr, "cachefs: unmounted "+mnt) {
		t.Errorf("no unmount figures on stderr: %s", r.stderr)
	}
}

func TestRunCommandErrors(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"run", src, mnt, "--", "no-such-command-here"}, 127},
		{[]string{"run", src, mnt, "--", "sh", "-c", "kill -KILL $$"}, 128 + 9},
		{[]string{"run", filepath.Join(e.tmp, "missing"), mnt, "--", "touch", filepath.Join(e.tmp, "ran")}, 3},
		{[]string{"run", src, mnt, "touch", filepath.Join(e.tmp, "ran")}, 2},
		{[]string{"run", src, mnt, "--env", "A=B", "--", "true"}, 2},
	} {
		r := e.run(c.args...)
		if r.code != c.code {
			t.Errorf("cachefs %v exited %d, want %d\nstderr: %s", c.args, r.code, c.code, r.stderr)
		}
		if isMounted(mnt) {
			t.Fatalf("cachefs %v left %s mounted", c.args, mnt)
		}
	}
	if _, err := os.Stat(filepath.Join(e.tmp, "ran")); err == nil {
		t.Errorf("the command ran although the mount failed or the arguments were wrong")
	}
}

// signalJob is a command that reports its start, answers SIGUSR1, SIGUSR2
// and SIGINT in files, and exits 7 on SIGTERM unless told to ignore it.
const signalJob = `dir=$1
trap 'echo usr1 >> "$dir/signals"' USR1
trap 'echo usr2 >> "$dir/signals"' USR2
trap 'echo int >> "$dir/signals"' INT
if [ "$2" = ignore ]; then trap '' TERM; else trap 'echo term >> "$dir/signals"; exit 7' TERM; fi
echo $$ > "$dir/started"
while :; do sleep 0.05; done`

func TestRunForwardsSignals(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	cmd, _, errb := e.startRun(src, mnt, "--", "sh", "-c", signalJob, "sh", e.tmp)
	waitFile(t, filepath.Join(e.tmp, "started"))
	if !isMounted(mnt) {
		t.Fatalf("the command started but %s is not mounted", mnt)
	}
	want := ""
	for _, s := range []struct {
		sig  syscall.Signal
		line string
	}{{syscall.SIGUSR1, "usr1\n"}, {syscall.SIGUSR2, "usr2\n"}, {syscall.SIGINT, "int\n"}} {
		if err := cmd.Process.Signal(s.sig); err != nil {
			t.Fatal(err)
		}
		want += s.line
		waitContent(t, filepath.Join(e.tmp, "signals"), want)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, waitRun(t, cmd)); code != 7 {
		t.Fatalf("cachefs run exited %d after SIGTERM, want the command's 7\nstderr: %s", code, errb)
	}
	if got, _ := os.ReadFile(filepath.Join(e.tmp, "signals")); string(got) != want+"term\n" {
		t.Errorf("the command saw %q, want each signal once", got)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted after cachefs run returned", mnt)
	}
	if pid := daemonOf(t, errb.String()); processAlive(pid) {
		t.Fatalf("daemon %d still running", pid)
	}
}

func TestRunGracePeriodKillsCommand(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	cmd, _, errb := e.startRun(src, mnt, "--grace", "200ms", "--", "sh", "-c", signalJob, "sh", e.tmp, "ignore")
	pid, _ := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(e.tmp, "started"))))
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCodeOf(t, waitRun(t, cmd)); code != 128+9 {
		t.Fatalf("cachefs run exited %d, want 137 (command killed after its grace period)\nstderr: %s", code, errb)
	}
	if processAlive(pid) {
		t.Fatalf("the command %d outlived cachefs run", pid)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted", mnt)
	}
}

// A supervisor killed outright (SIGKILL, the OOM killer) takes the mount
// and the command with it: nothing is left for the next job on the node.
func TestRunKilledLeavesNothing(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	cmd, _, errb := e.startRun(src, mnt, "--", "sh", "-c", signalJob, "sh", e.tmp)
	pid, _ := strconv.Atoi(strings.TrimSpace(waitFile(t, filepath.Join(e.tmp, "started"))))
	daemon := daemonOf(t, errb.String())
	cmd.Process.Kill()
	_ = waitRun(t, cmd)
	if !waitGone(daemon, 30*time.Second) {
		syscall.Kill(daemon, syscall.SIGKILL)
		t.Fatalf("daemon %d outlived its killed cachefs run", daemon)
	}
	if !waitGone(pid, 30*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("command %d outlived its killed cachefs run", pid)
	}
	if isMounted(mnt) {
		t.Fatalf("%s still mounted after its cachefs run was killed", mnt)
	}
	// The cache stays usable: the next run over it reads the same bytes.
	want := sumTree(t, src)
	if r := e.run("run", src, mnt, "--", "sh", "-c", checksums, "sh", mnt); r.code != 0 || r.stdout != want {
		t.Fatalf("run after a killed run: exit %d, checksums match %v\nstderr: %s", r.code, r.stdout == want, r.stderr)
	}
}

// run --push mounts a writable view and pushes what COMMAND wrote to the
// source before unmounting; a file another job changed on the source in
// the meantime is not overwritten: exit 13, and the change is kept.
func TestRunPush(t *testing.T) {
	e := newEnv(t)
	src := writableSource(t, e, map[string]string{"changed.txt": "v1", "conflict.txt": "v1"})
	mnt := filepath.Join(e.tmp, "mnt")
	write := `echo new >"$1/new.txt" && echo v2 >"$1/changed.txt"`
	r := e.run("run", src, mnt, "--push", "--", "sh", "-c", write, "sh", mnt)
	if r.code != 0 {
		t.Fatalf("cachefs run --push exited %d\nstderr: %s", r.code, r.stderr)
	}
	fileIs(t, filepath.Join(src, "new.txt"), []byte("new\n"))
	fileIs(t, filepath.Join(src, "changed.txt"), []byte("v2\n"))
	noTemps(t, src)
	if isMounted(mnt) || !strings.Contains(r.stderr, "removed the local copies") {
		t.Errorf("after the push: mounted %v, stderr: %s", isMounted(mnt), r.stderr)
	}
	if pid := daemonOf(t, r.stderr); processAlive(pid) {
		t.Fatalf("daemon %d still running after cachefs run returned", pid)
	}

	// Another job lands its version while this one runs.
	clash := `echo mine >"$1/conflict.txt" && echo theirs >"$2/conflict.txt"`
	r = e.run("run", src, mnt, "--push", "--", "sh", "-c", clash, "sh", mnt, src)
	if r.code != 13 || !strings.Contains(r.stderr, "conflict\tconflict.txt") || !strings.Contains(r.stderr, "kept 1 changed files") {
		t.Fatalf("cachefs run --push with a conflict: exit %d, want 13\nstderr: %s", r.code, r.stderr)
	}
	fileIs(t, filepath.Join(src, "conflict.txt"), []byte("theirs\n"))
	if isMounted(mnt) {
		t.Errorf("%s still mounted after a push with conflicts", mnt)
	}
}
