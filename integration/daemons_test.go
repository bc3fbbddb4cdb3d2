package integration

// Which daemons and mounts belong to a test, and their removal when the
// test ends however it ended.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
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
	mnt := mountpointOf(e.t, args)
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
// or "" for any other command. Flags are skipped with their values, so
// that `--log-level loud mount SRC MNT` names MNT, not SRC.
func mountpointOf(t testing.TB, args []string) string {
	takesValue := flagsWithValues(t)
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if !strings.Contains(a, "=") && takesValue[strings.TrimLeft(a, "-")] {
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) < 3 || pos[0] != "mount" {
		return ""
	}
	return pos[2]
}

var (
	valueFlagsOnce sync.Once
	valueFlags     map[string]bool
	valueFlagsErr  error
)

// flagsWithValues reads from `cachefs mount --help` which flags of mount
// and global ones take a value, so that the list follows the command's
// flags. Keys are names without dashes, long and short.
func flagsWithValues(t testing.TB) map[string]bool {
	t.Helper()
	valueFlagsOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, "mount", "--help").Output()
		if err != nil {
			valueFlagsErr = fmt.Errorf("cachefs mount --help: %w", err)
			return
		}
		valueFlags = parseValueFlags(string(out))
	})
	if valueFlagsErr != nil {
		t.Fatal(valueFlagsErr)
	}
	// Flags known to take a value: if help's format changed and these are
	// not found, no mount would get its cleanup.
	for _, f := range []string{"cache-dir", "log-level"} {
		if !valueFlags[f] {
			t.Fatalf("cannot tell from cachefs mount --help that --%s takes a value", f)
		}
	}
	return valueFlags
}

// valueFlagRe matches a flag line of cobra's help whose name is followed by
// its value's type or name (`--cache-dir path   node-local...`); a boolean
// flag has only spaces before its description.
var valueFlagRe = regexp.MustCompile(`(?m)^\s+(?:-(\w), )?--([\w-]+) \S+  `)

func parseValueFlags(help string) map[string]bool {
	m := map[string]bool{}
	for _, sub := range valueFlagRe.FindAllStringSubmatch(help, -1) {
		if sub[1] != "" {
			m[sub[1]] = true
		}
		m[sub[2]] = true
	}
	return m
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

// TestMountpointOf: the cleanup of a mount is registered for the right
// path whatever flags come before, between or after the arguments.
func TestMountpointOf(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "loud", "mount", "src", "m4"}, "m4"},
		{[]string{"mount", "--json", "src", "mnt", "--cache-dir", "c"}, "mnt"},
		{[]string{"mount", "--cache-dir", "c", "--writable", "src", "mnt"}, "mnt"},
		{[]string{"mount", "--cache-dir=c", "--warm", ".", "src", "mnt"}, "mnt"},
		{[]string{"--log-format=json", "mount", "src", "--", "-mnt"}, "-mnt"},
		{[]string{"mount", "--index", "i", "src"}, ""},
		{[]string{"unmount", "--keep", "mnt"}, ""},
		{[]string{"status", "--json", "mnt", "x"}, ""},
	} {
		if got := mountpointOf(t, c.args); got != c.want {
			t.Errorf("mountpointOf(%q) = %q, want %q", c.args, got, c.want)
		}
	}
}
