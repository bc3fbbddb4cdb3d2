package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cachefs/cachefs/privdir"
	"golang.org/x/sys/unix"
)

// A mountpoint is named by a path, and mount(2) follows that path when it
// is called. On a shared node the path often runs through /tmp, where
// another user may have put a link or a directory at the name first: root
// would then mount the source over a directory of that user's choosing
// (an empty /usr/local/bin, say), or over one that user can swap for such a
// link before the mount. So a mountpoint is used only if no other user
// chose it nor can change it: every link on the way is root's or ours,
// every directory above it is root's or ours and writable by others only
// with the sticky bit, and the mountpoint is root's or ours. These are the
// rules privdir applies to the parents of the cache directory.

// errNotOurs marks a mountpoint path another user chose or can change.
var errNotOurs = errors.New("another user could choose where it leads")

// ours reports whether a file of uid is one that no other user controls.
func ours(uid uint32) bool { return uid == 0 || uid == uint32(os.Geteuid()) }

// linksOurs follows p's symlinks as the kernel does and refuses p if one of
// them belongs to another user. The last component is read as a link
// before anything stats it: it may be the root of a hung mount.
func linksOurs(p string) error {
	p, err := filepath.Abs(p)
	if err != nil {
		return err
	}
	cur, rest := "/", strings.Split(p, "/")
	for hops := 0; len(rest) > 0; {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, name)
		target, err := os.Readlink(next)
		if err != nil {
			cur = next // not a link, or missing: to be made
			continue
		}
		var st unix.Stat_t
		if err := unix.Lstat(next, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: next, Err: err}
		}
		if !ours(st.Uid) {
			return fmt.Errorf("mountpoint %s: %w: %s is a symlink owned by %s", p, errNotOurs, next, privdir.Owner(st.Uid))
		}
		if hops++; hops > 40 {
			return &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return nil
}

// parentsOurs refuses the resolved mountpoint mnt if a directory above it
// lets another user replace what is below. Those still missing are made
// by MkdirAll, ours.
func parentsOurs(mnt string) error {
	for dir := filepath.Dir(mnt); ; dir = filepath.Dir(dir) {
		var st unix.Stat_t
		err := unix.Lstat(dir, &st)
		switch {
		case errors.Is(err, unix.ENOENT):
			continue
		case err != nil:
			return &os.PathError{Op: "lstat", Path: dir, Err: err}
		case !ours(st.Uid):
			return fmt.Errorf("mountpoint %s: %w: %s is owned by %s", mnt, errNotOurs, dir, privdir.Owner(st.Uid))
		case st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0:
			return fmt.Errorf("mountpoint %s: %w: %s is writable by others without the sticky bit (mode %o)", mnt, errNotOurs, dir, st.Mode&0o7777)
		}
		if dir == "/" {
			return nil
		}
	}
}

// openOurs opens the mountpoint mnt, not through a link, if it is root's
// or ours: in a sticky directory only its owner can swap it.
func openOurs(mnt string) (*os.File, error) {
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: mnt, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "fstat", Path: mnt, Err: err}
	}
	if !ours(st.Uid) {
		unix.Close(fd)
		return nil, fmt.Errorf("mountpoint %s: %w: it is owned by %s", mnt, errNotOurs, privdir.Owner(st.Uid))
	}
	return os.NewFile(uintptr(fd), mnt), nil
}
