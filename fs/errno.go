package fs

import (
	"context"
	"errors"
	"io/fs"
	"syscall"
)

// ErrChanged is returned by Content when a source file no longer matches the
// snapshot. Serving it would mix two versions of the file, so reads fail.
var ErrChanged = errors.New("source file changed since the snapshot")

// errno maps an error from Content to the errno a reader sees. go-fuse's own
// ToErrno turns anything unknown into ENOTSUP, which would mislead a user, so
// unknown errors become EIO.
func errno(err error) syscall.Errno {
	var en syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrChanged):
		return syscall.EIO
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
