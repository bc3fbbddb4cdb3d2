package blockcache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cachefs/cachefs/cachedir"
	"github.com/cachefs/cachefs/internal/sysx"
	"golang.org/x/sys/unix"
)

// ErrUnsafeDir means a directory the cache would write in is not private
// to this process's user: owned by another user, writable by its group or
// by others, or not a directory at all (a symlink, say). Another user
// could then plant names the cache writes through.
var ErrUnsafeDir = errors.New("not a private directory")

// ErrUnsafeFile means a name in the cache directory holds something the
// cache did not make: a symlink, a file of another owner, or one with
// other hard links.
var ErrUnsafeFile = errors.New("not a file of this cache")

// layout reaches every name of the cache directory through descriptors of
// directories checked to be private, never through a path: nothing another
// user renames or symlinks along the way redirects an open. Files are
// opened O_NOFOLLOW, and created O_EXCL.
type layout struct {
	dir    string // for messages only
	root   int    // the cache directory
	blocks int    // root/blocks

	mu   sync.Mutex
	subs map[string]int // blocks/XX, opened and checked once
}

func openLayout(dir string) (*layout, error) {
	// cmd makes and checks the directory; making the last component here
	// keeps library users and tests working with a missing one.
	if err := unix.Mkdir(dir, 0o700); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("blockcache: %w", &os.PathError{Op: "mkdir", Path: dir, Err: err})
	}
	root, err := openDir(unix.AT_FDCWD, dir, dir)
	if err != nil {
		return nil, err
	}
	blocks, err := subdir(root, cachedir.BlocksName, cachedir.Layout(dir).Blocks())
	if err != nil {
		unix.Close(root)
		return nil, err
	}
	return &layout{dir: dir, root: root, blocks: blocks, subs: map[string]int{}}, nil
}

// openDir opens name below parent as a directory without following a
// symlink, and checks that it is private.
func openDir(parent int, name, shown string) (int, error) {
	fd, err := sysx.RetryEINTRFd(func() (int, error) {
		return unix.Openat(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	})
	if err == unix.ELOOP || err == unix.ENOTDIR {
		return -1, fmt.Errorf("blockcache: %s is not a directory: %w", shown, ErrUnsafeDir)
	}
	if err != nil {
		return -1, fmt.Errorf("blockcache: %w", &os.PathError{Op: "open", Path: shown, Err: err})
	}
	if err := checkPrivateDir(fd, shown); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func checkPrivateDir(fd int, shown string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("blockcache: %w", &os.PathError{Op: "fstat", Path: shown, Err: err})
	}
	if uid := uint32(os.Geteuid()); st.Uid != uid || st.Mode&0o022 != 0 {
		return fmt.Errorf("blockcache: %s is owned by uid %d with mode %#o (want uid %d, not writable by group or others): %w",
			shown, st.Uid, st.Mode&0o7777, uid, ErrUnsafeDir)
	}
	return nil
}

// subdir makes name below parent 0700 unless it exists, then opens and
// checks it.
func subdir(parent int, name, shown string) (int, error) {
	if err := unix.Mkdirat(parent, name, 0o700); err != nil && err != unix.EEXIST {
		return -1, fmt.Errorf("blockcache: %w", &os.PathError{Op: "mkdir", Path: shown, Err: err})
	}
	return openDir(parent, name, shown)
}

// sub returns the directory that holds the files of the entry called name.
func (l *layout) sub(name string) (int, error) {
	d := name[:2]
	l.mu.Lock()
	defer l.mu.Unlock()
	if fd, ok := l.subs[d]; ok {
		return fd, nil
	}
	fd, err := subdir(l.blocks, d, l.shown(d))
	if err != nil {
		return -1, err
	}
	l.subs[d] = fd
	return fd, nil
}

func (l *layout) shown(name string) string {
	return filepath.Join(cachedir.Layout(l.dir).Blocks(), name[:min(2, len(name))], name)
}

// openFile opens name (a data file or a presence log) with flags. A file
// that already existed must be a regular file of this user with no other
// link: one planted by anyone else is refused, never read or written.
func (l *layout) openFile(name string, flags int) (*os.File, error) {
	d, err := l.sub(name)
	if err != nil {
		return nil, err
	}
	return openAt(d, name, l.shown(name), flags)
}

func openAt(dir int, name, shown string, flags int) (*os.File, error) {
	fd, err := sysx.RetryEINTRFd(func() (int, error) {
		return unix.Openat(dir, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	})
	if err == unix.ELOOP {
		return nil, fmt.Errorf("blockcache: %s is a symlink: %w", shown, ErrUnsafeFile)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: shown, Err: err}
	}
	f := os.NewFile(uintptr(fd), shown)
	if flags&unix.O_EXCL == 0 {
		if err := checkOwnFile(fd, shown); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func checkOwnFile(fd int, shown string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: shown, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != uint32(os.Geteuid()) || st.Nlink > 1 {
		return fmt.Errorf("blockcache: %s has mode %#o, uid %d and %d links: %w", shown, st.Mode, st.Uid, st.Nlink, ErrUnsafeFile)
	}
	return nil
}

// remove unlinks name; a name already gone is no error.
func (l *layout) remove(name string) error {
	d, err := l.sub(name)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(d, name, 0); err != nil && err != unix.ENOENT {
		return &os.PathError{Op: "unlink", Path: l.shown(name), Err: err}
	}
	return nil
}

// stat lstats name.
func (l *layout) stat(name string, st *unix.Stat_t) error {
	d, err := l.sub(name)
	if err != nil {
		return err
	}
	return unix.Fstatat(d, name, st, unix.AT_SYMLINK_NOFOLLOW)
}

// list calls fn with the name and lstat of every entry of the private
// directories below blocks/. Subdirectories that are not private are
// skipped: nothing in them is ever opened.
func (l *layout) list(fn func(name string, st *unix.Stat_t)) {
	for _, d := range readNames(l.blocks) {
		if len(d) != 2 {
			continue
		}
		fd, err := l.sub(d)
		if err != nil {
			continue
		}
		for _, n := range readNames(fd) {
			var st unix.Stat_t
			if len(n) >= 2 && n[:2] == d && unix.Fstatat(fd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
				fn(n, &st)
			}
		}
	}
}

// readNames lists a directory through a descriptor of its own, so the
// shared offset of dirfd is left alone.
func readNames(dirfd int) []string {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), ".")
	defer f.Close()
	names, _ := f.Readdirnames(-1)
	return names
}

// takeLock holds an exclusive flock on DIR/lock for the life of the
// process; the kernel drops it when the process dies, even by kill -9.
// The owner line is written over the start of the file, never truncating
// it: readers take the first line.
func (l *layout) takeLock(owner string) (*os.File, error) {
	p := cachedir.Layout(l.dir).Lock()
	f, err := openAt(l.root, cachedir.LockName, p, unix.O_RDWR|unix.O_CREAT)
	if err != nil {
		return nil, fmt.Errorf("blockcache: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b, _ := io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			who, _, _ := strings.Cut(string(b), "\n")
			if who = strings.TrimSpace(who); who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("%w: %s is used by %s", ErrLocked, l.dir, who)
		}
		return nil, fmt.Errorf("blockcache: lock %s: %w", p, err)
	}
	// The owner line only names the holder in another process's refusal,
	// which says "another process" without it.
	_, _ = f.WriteAt([]byte(strings.ReplaceAll(owner, "\n", " ")+"\n"), 0)
	return f, nil
}

func (l *layout) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fd := range l.subs {
		unix.Close(fd)
	}
	clear(l.subs)
	unix.Close(l.blocks)
	unix.Close(l.root)
}
