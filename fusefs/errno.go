package fusefs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
)

// errno maps an error from Content to the errno a reader sees; errors that
// wrap an errno (a changed source file wraps EIO) keep it. go-fuse's own
// ToErrno turns anything unknown into ENOTSUP, which would mislead a user, so
// unknown errors become EIO.
func errno(err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.As(err, &en):
		return sourceErrno(en)
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	default:
		return syscall.EIO
	}
}

// sourceErrno keeps an errno from the source, except those that would
// blame the wrong party: ENOTCONN and ECONNABORTED read as "the cachefs
// daemon died" (the errno of a dead FUSE mount), and ESTALE as a stale
// handle of this mount, when it is the source's filesystem that failed.
func sourceErrno(en syscall.Errno) syscall.Errno {
	switch en {
	case syscall.ENOTCONN, syscall.ECONNABORTED, syscall.ESTALE:
		return syscall.EIO
	}
	return en
}
