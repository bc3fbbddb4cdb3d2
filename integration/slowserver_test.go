package integration

// The suite's test binary doubles as a slow-source server in a process of
// its own (TestMain dispatches to serveSlowfs), which a test can stop with
// SIGSTOP like a hung NFS or Lustre server, or kill -9 like a crashed FUSE
// daemon of a shared filesystem: slowfs.Mount in-process can do neither.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// slowfsServeEnv names the mountpoint to serve at; slowfsServeEnv_SOURCE
// names the directory served.
const slowfsServeEnv = "CACHEFS_TEST_SLOWFS_SERVE"

// serveSlowfs serves until SIGTERM, then unmounts; it is the whole life of
// a server process.
func serveSlowfs(mnt string) int {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	sfs, err := slowfs.Mount(os.Getenv(slowfsServeEnv+"_SOURCE"), mnt, slowfs.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "slow source:", err)
		return 1
	}
	fmt.Println("ready")
	<-term
	if err := sfs.Unmount(); err != nil {
		fmt.Fprintln(os.Stderr, "slow source:", err)
		return 1
	}
	return 0
}

// startSlowfs serves src at mnt from a server process and returns its pid.
// The server has a session of its own: a stopped process in a process
// group the kernel finds orphaned gets SIGHUP, which would end it. Cleanup,
// registered before the server starts, continues it, asks it to stop,
// kills it if it does not, and detaches a mount a killed server left.
func startSlowfs(t *testing.T, src, mnt string) (pid int) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), slowfsServeEnv+"="+mnt, slowfsServeEnv+"_SOURCE="+src)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopSlowfs(t, cmd, mnt) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			t.Fatalf("slow source server: %q", line)
		}
	case <-time.After(hangGuard):
		t.Fatal("the slow source server did not come up")
	}
	return cmd.Process.Pid
}

func stopSlowfs(t *testing.T, cmd *exec.Cmd, mnt string) {
	if cmd.Process == nil {
		return
	}
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGCONT)
	syscall.Kill(pid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Errorf("slow source server %d did not stop; killing it", pid)
		cmd.Process.Kill()
		<-done
	}
	if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		t.Errorf("detaching the slow source at %s: %v", mnt, err)
	}
}
