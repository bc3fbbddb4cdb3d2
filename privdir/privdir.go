// Package privdir creates, adopts and uses the directories and small files
// that cachefs keeps for one user outside its cache's blocks: the default
// cache directory under $TMPDIR, the runtime directory that holds mount
// records, and the daemon's log file.
//
// # Threat
//
// These directories often live under a world-writable parent such as /tmp,
// where any user of the node can take a name first: create a directory of
// their own there, or a symlink to one of the victim's files. A root job
// prologue that adopted such a name would write wherever that user chose,
// and a cache inside a directory another user can read leaks the copies of
// files that user may not read.
//
// # Invariants
//
// Make and Find reach the directory on file descriptors, one component at a
// time, each opened with O_NOFOLLOW and checked with fstat, so a symlink
// swapped in during the walk fails it instead of redirecting it:
//
//   - the shared parent and every directory above it (symlinks in the
//     parent's name are resolved first) are owned by root or the effective
//     uid, and writable by group or others only with the sticky bit set: no
//     other user can rename or replace what lies below them;
//   - every private directory below the shared parent is created with mkdir,
//     mode 0700, one at a time (never MkdirAll), and adopted only if it is a
//     directory, not a symlink, owned by the effective uid, with no group or
//     other permission bits. A loose mode is refused, not tightened: other
//     users could have planted entries while it was open to them, and chmod
//     cannot undo that.
//
// Anything else fails with an *Error, which matches ErrNotPrivate and names
// the path and its owner. Once verified, a path can be used by name: no user
// other than root and the effective uid can change what it resolves to.
//
// Adopt applies a weaker rule to a directory the user named explicitly: it
// must be the effective uid's own and not a symlink; its ancestors are the
// user's choice. Its mode is tightened to 0700.
//
// Files (file.go) are opened with O_NOFOLLOW, created with O_EXCL or under a
// random temporary name, and an existing file is used only if fstat shows a
// regular file of the effective uid's with a single link.
package privdir

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrNotPrivate is matched by every refusal to use a path another user
// could control.
var ErrNotPrivate = errors.New("privdir: not private to this user")

// Error says why Path cannot be used.
type Error struct {
	Path   string
	Reason string // completes "PATH ...", e.g. "is owned by uid 1001 (alice), not by you"
	// Shared is set when Path is the shared parent or above it: not
	// cachefs's to remove.
	Shared bool
}

func (e *Error) Error() string { return e.Path + " " + e.Reason }

func (e *Error) Unwrap() error { return ErrNotPrivate }

// Owner names a uid for messages: "uid 1001 (alice)", or "uid 1001" when
// no account has it.
func Owner(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return fmt.Sprintf("uid %d (%s)", uid, u.Username)
	}
	return fmt.Sprintf("uid %d", uid)
}

const (
	openPath = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	// Private directories are opened readable so that fchmod works on the
	// descriptor; O_NONBLOCK keeps a FIFO planted at the name from blocking.
	openDir = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC
)

// Make returns the path of parent/names..., creating each private directory
// that is missing and verifying all of them and parent as the package
// comment says. The path returned has parent's symlinks resolved.
func Make(parent string, names ...string) (string, error) {
	return walk(parent, names, true)
}

// Find is Make for readers: it verifies the same way but creates nothing,
// failing with an error matching fs.ErrNotExist where a directory is
// missing.
func Find(parent string, names ...string) (string, error) {
	return walk(parent, names, false)
}

func walk(parent string, names []string, create bool) (string, error) {
	fd, path, err := openShared(parent)
	if err != nil {
		return "", err
	}
	for _, name := range names {
		if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
			unix.Close(fd)
			return "", fmt.Errorf("privdir: %q is not a single path component", name)
		}
		path = filepath.Join(path, name)
		next, err := openPrivate(fd, name, path, create)
		unix.Close(fd)
		if err != nil {
			return "", err
		}
		fd = next
	}
	unix.Close(fd)
	return path, nil
}

// openShared resolves parent and opens it, checking it and every directory
// above it.
func openShared(parent string) (fd int, path string, err error) {
	real, err := filepath.EvalSymlinks(parent)
	if err != nil {
		return -1, "", fmt.Errorf("privdir: %w", err)
	}
	if real, err = filepath.Abs(real); err != nil {
		return -1, "", fmt.Errorf("privdir: %w", err)
	}
	if fd, err = unix.Open("/", openPath, 0); err != nil {
		return -1, "", &os.PathError{Op: "open", Path: "/", Err: err}
	}
	path = "/"
	for _, comp := range strings.Split(real, "/") {
		if comp != "" {
			next, err := unix.Openat(fd, comp, openPath, 0)
			unix.Close(fd)
			path = filepath.Join(path, comp)
			if err != nil {
				return -1, "", &os.PathError{Op: "open", Path: path, Err: err}
			}
			fd = next
		}
		if err := checkShared(fd, path); err != nil {
			unix.Close(fd)
			return -1, "", err
		}
	}
	return fd, path, nil
}

func checkShared(fd int, path string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	euid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return &Error{Path: path, Reason: "is not a directory", Shared: true}
	case st.Uid != 0 && st.Uid != euid:
		return &Error{Path: path, Reason: fmt.Sprintf("is owned by %s, neither you nor root, who alone may own the directories above a private one", Owner(st.Uid)), Shared: true}
	case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
		return &Error{Path: path, Reason: fmt.Sprintf("has mode %04o: others may rename what lies in it (only a sticky directory, like /tmp, may be writable by others)", st.Mode&0o7777), Shared: true}
	}
	return nil
}

// openPrivate creates (if asked) and opens name in dirfd, returning the
// descriptor only if the directory is the effective uid's and 0700.
func openPrivate(dirfd int, name, path string, create bool) (int, error) {
	created := false
	if create {
		switch err := unix.Mkdirat(dirfd, name, 0o700); {
		case err == nil:
			created = true
		case !errors.Is(err, unix.EEXIST):
			return -1, &os.PathError{Op: "mkdir", Path: path, Err: err}
		}
	}
	fd, err := unix.Openat(dirfd, name, openDir, 0)
	if err != nil {
		return -1, describeOpenError(dirfd, name, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := checkPrivate(fd, &st, path, created); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func checkPrivate(fd int, st *unix.Stat_t, path string, created bool) error {
	if st.Uid != uint32(os.Geteuid()) {
		return notYours(path, st)
	}
	if created {
		// The umask may have taken owner bits from mkdir's 0700.
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
		return nil
	}
	if st.Mode&0o077 != 0 {
		return &Error{Path: path, Reason: fmt.Sprintf("has mode %04o, not 0700", st.Mode&0o7777)}
	}
	return nil
}

func notYours(path string, st *unix.Stat_t) error {
	return &Error{Path: path, Reason: fmt.Sprintf("is owned by %s, not by you", Owner(st.Uid))}
}

// describeOpenError turns a failed O_NOFOLLOW|O_DIRECTORY open into a
// message naming what is there and whose it is.
func describeOpenError(dirfd int, name, path string, err error) error {
	var st unix.Stat_t
	if errors.Is(err, unix.ENOENT) || unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
		return &os.PathError{Op: "open", Path: path, Err: err}
	}
	return describe(path, &st, err)
}

func describe(path string, st *unix.Stat_t, err error) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &Error{Path: path, Reason: fmt.Sprintf("is a symlink owned by %s, not a directory of yours", Owner(st.Uid))}
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return &Error{Path: path, Reason: fmt.Sprintf("is not a directory (owned by %s)", Owner(st.Uid))}
	case st.Uid != uint32(os.Geteuid()):
		return notYours(path, st)
	}
	return &os.PathError{Op: "open", Path: path, Err: err}
}

// Adopt makes path a directory only the effective uid can use: created 0700
// (with any missing parents 0700) if missing; if present, it must be the
// effective uid's own directory, not a symlink, and its mode is tightened to
// 0700. Its ancestors are not checked: the user named the path.
func Adopt(path string) error {
	err := os.Mkdir(path, 0o700)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
			err = os.Mkdir(path, 0o700)
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fd, err := unix.Open(path, openDir, 0)
	if err != nil {
		var st unix.Stat_t
		if errors.Is(err, unix.ENOENT) || unix.Lstat(path, &st) != nil {
			return &os.PathError{Op: "open", Path: path, Err: err}
		}
		return describe(path, &st, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if st.Uid != uint32(os.Geteuid()) {
		return notYours(path, &st)
	}
	if st.Mode&0o777 != 0o700 {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return &os.PathError{Op: "chmod", Path: path, Err: err}
		}
	}
	return nil
}
