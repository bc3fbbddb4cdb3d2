// Package sysx holds the small system-call helpers that more than one
// cachefs package needs, written once (go-fuse's internal/openat and
// gocryptfs's syscallcompat are the models).
package sysx

import "golang.org/x/sys/unix"

// RetryEINTR repeats a call that a signal interrupted: on network and FUSE
// sources slow calls are interruptible, and the Go runtime preempts its
// goroutines with signals, so EINTR is routine there.
func RetryEINTR(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// RetryEINTRFd is RetryEINTR for calls that return a descriptor or a count.
func RetryEINTRFd(call func() (int, error)) (int, error) {
	for {
		if n, err := call(); err != unix.EINTR {
			return n, err
		}
	}
}

// Fstat is unix.Fstat, retried on EINTR.
func Fstat(fd int, st *unix.Stat_t) error {
	return RetryEINTR(func() error { return unix.Fstat(fd, st) })
}
