package blockcache

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cachefs/cachefs/internal/ident"
	"github.com/cachefs/cachefs/internal/sysx"
	"golang.org/x/sys/unix"
)

// DirSource opens files beneath a source directory and checks each against
// its Key with one fstat of the open descriptor.
//
// Confinement: every open resolves relative to a descriptor of the source
// root, beneath it, through no symlink or magic link, and without blocking
// (openBeneath); anything but a regular file is refused before a byte is
// read. Whoever can write in the source can swap a file for a FIFO, a
// device or a symlink after the snapshot: that costs them an EIO, never a
// stuck thread or an open outside the source.
//
// Remount: the root descriptor is held for the life of the mount, which
// pins the source's mount while cachefs serves it. If that mount goes away
// anyway (a forced or lazy unmount, a dead FUSE server, a stale NFS handle)
// the root is opened again by its path once, and inode numbers are then
// compared as the snapshot would have recorded them against the new root's
// device, so a remount that kept inodes, sizes and mtimes is not a change.
type DirSource struct {
	path    string
	snapDev uint64 // st_dev of the root when the snapshot was taken

	mu     sync.Mutex // serializes reopen and Close
	closed bool
	root   atomic.Pointer[rootDir]
}

// rootDir is one opening of the source root. The descriptor is only used
// inside f's Control, so a concurrent reopen that closes f cannot let an
// open run relative to a reused descriptor number.
type rootDir struct {
	f   *os.File
	dev uint64
}

// NewDirSource opens the source root at path. snapshotDev is the root's
// st_dev recorded by the snapshot, against which inode numbers were mixed
// (ident.MixIno).
func NewDirSource(path string, snapshotDev uint64) (*DirSource, error) {
	r, err := openRoot(path)
	if err != nil {
		return nil, err
	}
	d := &DirSource{path: path, snapDev: snapshotDev}
	d.root.Store(r)
	return d, nil
}

// Close releases the root descriptor; later opens fail.
func (d *DirSource) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.root.Load().f.Close()
}

// Open implements Source.
func (d *DirSource) Open(key Key) (SourceFile, error) {
	if err := checkRelPath(key.Path); err != nil {
		return nil, err
	}
	r := d.root.Load()
	fd, st, err := r.open(key.Path)
	if rootGone(err) {
		if r, err = d.reopen(r); err == nil {
			fd, st, err = r.open(key.Path)
		}
	}
	if err != nil {
		return nil, openError(key.Path, err)
	}
	if err := d.check(key, &st, r.dev); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), key.Path), nil
}

// reopen replaces old, which no longer answers, by a fresh opening of the
// root's path, unless another caller did so already.
func (d *DirSource) reopen(old *rootDir) (*rootDir, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("source %s: %w", d.path, os.ErrClosed)
	}
	if cur := d.root.Load(); cur != old {
		return cur, nil
	}
	r, err := openRoot(d.path)
	if err != nil {
		return nil, err
	}
	d.root.Store(r)
	old.f.Close()
	return r, nil
}

// check compares an open file with the identity the snapshot recorded.
// Inode numbers are mixed with the snapshot's root device, and failing
// that with the device of the root the file was opened under, which
// differs only after a remount.
func (d *DirSource) check(key Key, st *unix.Stat_t, rootDev uint64) error {
	if t := st.Mode & unix.S_IFMT; t != unix.S_IFREG {
		return fmt.Errorf("%s is now a %s: %w", key.Path, typeName(t), ErrChanged)
	}
	ino := ident.MixIno(st.Dev, st.Ino, d.snapDev)
	if ino != key.Ino && rootDev != d.snapDev {
		ino = ident.MixIno(st.Dev, st.Ino, rootDev)
	}
	if ino != key.Ino || st.Size != key.Size || st.Mtim.Nano() != key.Mtime {
		return fmt.Errorf("%s: snapshot has ino %d size %d mtime %d, source now ino %d size %d mtime %d: %w",
			key.Path, key.Ino, key.Size, key.Mtime, ino, st.Size, st.Mtim.Nano(), ErrChanged)
	}
	return nil
}

// openRoot opens the root by path. Symlinks in the path itself are
// followed: it names the source as the mounting user gave it.
func openRoot(path string) (*rootDir, error) {
	fd, err := sysx.RetryEINTRFd(func() (int, error) {
		return unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	})
	if err != nil {
		return nil, fmt.Errorf("source root: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	dev, err := devOf(fd)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("source root: %w", &os.PathError{Op: "statx", Path: path, Err: err})
	}
	return &rootDir{f: os.NewFile(uintptr(fd), path), dev: dev}, nil
}

// devOf returns the device of fd's filesystem without asking the
// filesystem: st_dev comes from the superblock, and AT_STATX_DONT_SYNC with
// an empty mask spares a network or FUSE source a getattr (after the
// mount, the source sees no metadata call).
func devOf(fd int) (uint64, error) {
	var stx unix.Statx_t
	for {
		err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_DONT_SYNC, 0, &stx)
		if err == nil {
			return unix.Mkdev(stx.Dev_major, stx.Dev_minor), nil
		}
		if err != unix.EINTR {
			return 0, err
		}
	}
}

// open opens rel beneath the root and stats it.
func (r *rootDir) open(rel string) (fd int, st unix.Stat_t, err error) {
	fd = -1
	rc, err := r.f.SyscallConn()
	if err != nil {
		return -1, st, err
	}
	cerr := rc.Control(func(root uintptr) {
		fd, err = openBeneath(int(root), rel)
	})
	if cerr != nil {
		// Closed by a concurrent reopen or by Close.
		return -1, st, fmt.Errorf("source root: %w", os.ErrClosed)
	}
	if err != nil {
		return -1, st, err
	}
	if err = sysx.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, st, err
	}
	return fd, st, nil
}

// rootGone reports errors meaning the root descriptor no longer reaches a
// live filesystem, so opening the root again by path may help.
func rootGone(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) ||
		errors.Is(err, unix.ESTALE) || errors.Is(err, unix.ENODEV) ||
		errors.Is(err, os.ErrClosed)
}

// openError restates a failed open. A symlink met on the way, an escape
// attempt or a component that is no longer a directory all mean the tree
// changed since the snapshot: EIO, and sticky for the file.
func openError(rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: a symlink on the path: %w", rel, ErrChanged)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: resolves outside the source root: %w", rel, ErrChanged)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: a component is no longer a directory: %w", rel, ErrChanged)
	case errors.Is(err, unix.ENXIO):
		return fmt.Errorf("%s is now a socket or device: %w", rel, ErrChanged)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &os.PathError{Op: "open", Path: rel, Err: err}
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFDIR:
		return "directory"
	}
	return fmt.Sprintf("file of type %#o", t)
}
