package mounttable

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ProcessAlive reports whether pid runs. A zombie does not count: a
// daemon is not its launcher's child, and its reaper may be slow.
func ProcessAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	st := procState(pid)
	return st != 0 && st != 'Z'
}

// procState is the state letter of /proc/PID/stat (R, S, D, T, t, Z...),
// or 0 if the process is not there.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2]
	}
	return '?'
}

// IsStopped reports whether pid is stopped by a signal or a debugger.
func IsStopped(pid int) bool {
	st := procState(pid)
	return st == 'T' || st == 't'
}

// WhyNoAnswer says, for a message, what a daemon that did not answer a
// probe is doing, as far as /proc tells.
func WhyNoAnswer(pid int) string {
	switch procState(pid) {
	case 0, 'Z':
		return fmt.Sprintf("daemon %d is gone", pid)
	case 'T', 't':
		return fmt.Sprintf("daemon %d is stopped (SIGSTOP or a debugger)", pid)
	case 'D':
		return fmt.Sprintf("daemon %d is waiting in the kernel, on its source or disk", pid)
	}
	return fmt.Sprintf("daemon %d is running but does not answer", pid)
}
