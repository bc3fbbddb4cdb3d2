package mounttable

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DetachTimeout bounds fusermount3 when Detach is not given a deadline.
const DetachTimeout = 10 * time.Second

// Detach unmounts path. Root calls umount2 directly; others go through
// fusermount3, the setuid helper that mounted it.
func Detach(path string, lazy bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), DetachTimeout)
	defer cancel()
	return DetachCtx(ctx, path, lazy)
}

// DetachCtx is Detach with the caller's deadline on fusermount3. umount2
// itself never waits on the daemon: the kernel does not ask a FUSE
// daemon before it unmounts, so a stopped daemon cannot hold it. A busy
// mount fails with an error that is unix.EBUSY.
func DetachCtx(ctx context.Context, path string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(path, flags); err != nil {
			return &os.PathError{Op: "umount", Path: path, Err: err}
		}
		return nil
	}
	bin := "fusermount3"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "fusermount"
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.CommandContext(ctx, bin, append(args, path)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return &os.PathError{Op: "umount", Path: path, Err: unix.EBUSY}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not finish: %w", bin, ctx.Err())
		}
		return fmt.Errorf("%s: %s (%w)", bin, msg, err)
	}
	return nil
}

// ProbeTimeout bounds a liveness probe of a mount. A daemon that answers
// at all answers statfs in microseconds; one that is stopped, or wedged
// in a source that hangs, never does, and must not take the CLI with it.
const ProbeTimeout = 2 * time.Second

// Health is what a probe learnt about a mount's daemon.
type Health int

const (
	Answers Health = iota
	// Dead: the kernel answers ENOTCONN, or ECONNABORTED once the
	// connection was aborted, for every request: the daemon is gone.
	Dead
	// Silent: no answer before the deadline; the daemon is stopped or
	// stuck, and may yet answer.
	Silent
)

// Probe asks for path's statfs, which the kernel never caches, while a
// stat of the root may be answered from the attribute cache a dead daemon
// left behind. The call runs on its own goroutine: if the daemon never
// answers, only that goroutine (and its thread) waits, until the process
// exits, which the kernel allows however stuck the request is.
func Probe(path string, timeout time.Duration) Health {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		done <- unix.Statfs(path, &st)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
			return Dead
		}
		return Answers
	case <-t.C:
		return Silent
	}
}

// IsStale reports whether path is a FUSE mount whose daemon is gone. A
// daemon that does not answer within ProbeTimeout is not called gone: it
// may be stopped, and its mount is then still someone's.
func IsStale(path string) bool {
	return Probe(path, ProbeTimeout) == Dead
}
