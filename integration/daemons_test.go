package integration

// Which daemons and mounts belong to a test, and their removal when the
// test ends however it ended.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// daemons lists the suite binary's processes started from e: their
// environment carries e's private TMPDIR. Other tests' daemons, and other
// runs', are not e's.
func (e *env) daemons() []int {
	var out []int
	for _, pid := range leftoverDaemons() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if bytes.Contains(b, []byte("\x00TMPDIR="+e.tmp+"\x00")) || bytes.HasPrefix(b, []byte("TMPDIR="+e.tmp+"\x00")) {
			out = append(out, pid)
		}
	}
	return out
}

// daemonsAt lists e's daemons serving (or starting to serve) mnt.
func (e *env) daemonsAt(mnts ...string) []int {
	var out []int
	for _, pid := range e.daemons() {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		for _, m := range mnts {
			if bytes.Contains(b, []byte("\x00"+m+"\x00")) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// forgetMountsOf registers, before a `cachefs mount` runs, the cleanup
// that removes what it mounted and started, whether it served, failed or
// was refused. Registering only after a successful mount leaves behind
// the mount of one that was expected to fail and did not.
func (e *env) forgetMountsOf(args []string) {
	mnt := mountpointOf(args)
	if mnt == "" {
		return
	}
	// A link is read now, while nothing is mounted at its target: a stat
	// at cleanup could wait on a dead or stopped daemon.
	real := mnt
	if target, err := os.Readlink(mnt); err == nil {
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(mnt), target)
		}
		real = target
	}
	e.t.Cleanup(func() { e.removeMount(mnt, real) })
}

// mountpointOf returns the mountpoint argument of a mount command line,
// or "" for any other command.
func mountpointOf(args []string) string {
	var pos []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			pos = append(pos, a)
		}
	}
	if len(pos) < 3 || pos[0] != "mount" {
		return ""
	}
	return pos[2]
}

func (e *env) removeMount(mnt, real string) {
	if isMounted(real) {
		e.t.Errorf("test left %s mounted; detaching", real)
		unix.Unmount(real, unix.MNT_DETACH)
	}
	for _, pid := range e.daemonsAt(mnt, real) {
		if waitGone(pid, 10*time.Second) {
			continue
		}
		e.t.Errorf("daemon %d of %s still running after its mount went; killing it", pid, mnt)
		syscall.Kill(pid, syscall.SIGKILL)
		waitGone(pid, 10*time.Second)
	}
}
