package fusefs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

func TestErrno(t *testing.T) {
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{context.Canceled, syscall.EINTR},
		{&os.PathError{Op: "open", Path: "d/f", Err: syscall.ENOENT}, syscall.ENOENT},
		{fmt.Errorf("fetch: %w", &os.PathError{Op: "read", Path: "d/f", Err: syscall.ENOTCONN}), syscall.EIO},
		{&os.PathError{Op: "read", Path: "d/f", Err: syscall.ECONNABORTED}, syscall.EIO},
		{&os.PathError{Op: "open", Path: "d/f", Err: syscall.ESTALE}, syscall.EIO},
		{&os.PathError{Op: "open", Path: "d/f", Err: syscall.EACCES}, syscall.EACCES},
		{fs.ErrNotExist, syscall.ENOENT},
		{fs.ErrPermission, syscall.EACCES},
		{fmt.Errorf("something else"), syscall.EIO},
	} {
		if got := errno(c.err); got != c.want {
			t.Errorf("errno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
