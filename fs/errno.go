package fs

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
		return en
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, fs.ErrPermission):
		return syscall.EACCES
	default:
		return syscall.EIO
	}
}
