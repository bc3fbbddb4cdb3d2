package blockcache

import (
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/cachefs/cachefs/internal/sysx"
	"golang.org/x/sys/unix"
)

// ErrUnsafePath means a key's path could name something outside the source
// root: absolute, empty, or with an empty, "." or ".." component. Such a
// path never reaches a system call.
var ErrUnsafePath = fmt.Errorf("source path is not a plain path beneath the source root: %w", syscall.EIO)

// fileFlags open a source file for reading. O_NONBLOCK makes a FIFO
// swapped in for the file open at once instead of waiting for a writer;
// O_NOFOLLOW refuses a final symlink even where the resolve flags cannot
// be used.
const fileFlags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOFOLLOW | unix.O_CLOEXEC

// beneath confines resolution to the tree below the directory descriptor
// and refuses every symlink on the way, /proc magic links included.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// noOpenat2 is set once openat2 is found missing (ENOSYS: a kernel before
// 5.6, or a seccomp filter that does not know it); tests set it to run the
// component walk.
var noOpenat2 atomic.Bool

// openBeneath opens rel, a path checked by checkRelPath, below the
// directory root, and returns a blocking descriptor of it. It does not
// check the file's type: the caller's fstat does.
func openBeneath(root int, rel string) (int, error) {
	fd := -1
	var err error = unix.ENOSYS
	if !noOpenat2.Load() {
		how := unix.OpenHow{Flags: fileFlags, Resolve: beneath}
		fd, err = sysx.RetryEINTRFd(func() (int, error) { return unix.Openat2(root, rel, &how) })
		if err == unix.ENOSYS {
			noOpenat2.Store(true)
		}
	}
	if err == unix.ENOSYS {
		fd, err = walkOpen(root, rel)
	}
	if err != nil {
		return -1, err
	}
	// Reads of a regular file never wait on O_NONBLOCK, but the flag
	// would reach a FUSE source's server and make os.File try the poller.
	// O_NONBLOCK is the only status flag fileFlags set, so clearing all of
	// them takes one fcntl instead of a read and a write of the flags.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, 0); err != nil {
		unix.Close(fd)
		return -1, err
	}
	// The cache asks for whole blocks and its own read-ahead: the source
	// client's read-ahead past a block would fetch bytes never asked for
	// (a 4 KiB header read would cost a block and more). Advice only, so
	// a source that refuses it (a FIFO, before the type check) is read
	// all the same.
	unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
	return fd, nil
}

// walkOpen is openBeneath without openat2: one openat per component, each
// directory opened O_NOFOLLOW|O_DIRECTORY relative to the previous one, so
// a symlink anywhere on the path fails (ELOOP or ENOTDIR) instead of being
// followed. checkRelPath has ruled out ".." and absolute paths.
func walkOpen(root int, rel string) (int, error) {
	parts := strings.Split(rel, "/")
	dir := root
	defer func() {
		if dir != root {
			unix.Close(dir)
		}
	}()
	for _, name := range parts[:len(parts)-1] {
		fd, err := sysx.RetryEINTRFd(func() (int, error) {
			return unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		})
		if err != nil {
			return -1, err
		}
		if dir != root {
			unix.Close(dir)
		}
		dir = fd
	}
	last := parts[len(parts)-1]
	return sysx.RetryEINTRFd(func() (int, error) { return unix.Openat(dir, last, fileFlags, 0) })
}

// checkRelPath refuses paths that are not plain relative paths. openat2
// would refuse an escape anyway; the walk relies on this check.
func checkRelPath(rel string) error {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.IndexByte(rel, 0) >= 0 {
		return fmt.Errorf("%q: %w", rel, ErrUnsafePath)
	}
	for name := range strings.SplitSeq(rel, "/") {
		if name == "" || name == "." || name == ".." {
			return fmt.Errorf("%q: %w", rel, ErrUnsafePath)
		}
	}
	return nil
}
