package privdir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

const openFile = unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// OpenAppend opens path for appending, as a log is. A missing file is
// created 0600 with O_EXCL; an existing one is used only if it is a regular
// file of the effective uid's with one link (a hard link planted at the name
// would append to another file), and never through a symlink.
func OpenAppend(path string) (*os.File, error) {
	for {
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL|openFile, 0o600)
		if err == nil {
			return blocking(fd, path)
		}
		if !errors.Is(err, unix.EEXIST) {
			return nil, &os.PathError{Op: "create", Path: path, Err: err}
		}
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_APPEND|openFile, 0)
		if errors.Is(err, unix.ENOENT) {
			continue // removed since the O_EXCL attempt
		}
		return ownedFile(fd, path, err)
	}
}

// ReadOwned reads path, at most max bytes of it, if it is a regular file of
// the effective uid's, not reached through a symlink at its last component.
func ReadOwned(path string, max int64) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|openFile, 0)
	f, err := ownedFile(fd, path, err)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("privdir: %s is larger than %d bytes", path, max)
	}
	return b, nil
}

// ownedFile checks what an O_NOFOLLOW open of path gave.
func ownedFile(fd int, path string, err error) (*os.File, error) {
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ENOENT) || unix.Lstat(path, &st) != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return nil, describeFile(path, &st)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := describeFile(path, &st); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return blocking(fd, path)
}

// blocking drops the O_NONBLOCK that guarded the open against a FIFO, so
// the file behaves as an ordinary one wherever it is duplicated.
func blocking(fd int, path string) (*os.File, error) {
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fcntl", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// describeFile says what disqualifies st, or returns nil.
func describeFile(path string, st *unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &Error{Path: path, Reason: fmt.Sprintf("is a symlink owned by %s, not a file of yours", Owner(st.Uid))}
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return &Error{Path: path, Reason: fmt.Sprintf("is not a regular file (owned by %s)", Owner(st.Uid))}
	case st.Uid != uint32(os.Geteuid()):
		return &Error{Path: path, Reason: fmt.Sprintf("is owned by %s, not by you", Owner(st.Uid))}
	case st.Nlink != 1:
		return &Error{Path: path, Reason: fmt.Sprintf("has %d hard links; it may be another file's name", st.Nlink)}
	}
	return nil
}

// WriteReplace replaces dir/name with data atomically: it writes a file
// under a random temporary name (os.CreateTemp: O_EXCL, 0600) and renames
// it over name, which replaces whatever was there, symlink included,
// without following it. dir must have been verified by Make.
func WriteReplace(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp) // the write's error is the one to report
	}
	return err
}
