package snapshot

// Reading ACLs during the walk. Each is one getxattr per entry (two for a
// directory) on top of its lstat; walkers run them in parallel like the
// lstats. A filesystem that answers EOPNOTSUPP for an attribute is not asked
// for it again (per device), so a source without NFSv4 ACLs pays one call
// per device for finding that out, and one without POSIX ACLs nothing after
// its first entry.

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cachefs/cachefs/internal/sysx"
	"golang.org/x/sys/unix"
)

// aclScratch is the buffer a walker reads ACLs into; POSIX ACLs of up to
// 511 entries fit.
const aclScratch = 4096

// xattrSizeMax is the kernel's limit on an xattr value (XATTR_SIZE_MAX).
const xattrSizeMax = 64 << 10

// xattrCaps remembers which attributes a device does not support.
type xattrCaps struct {
	unsupported sync.Map // xattrKey -> struct{}
	// noAt is set once getxattrat (Linux 6.13) is found missing; calls
	// then resolve the entry's whole path instead of one name.
	noAt atomic.Bool
}

type xattrKey struct {
	dev  uint64
	attr string
}

// recordACL reads the access control of name in dir (dirfd, or the path
// itself when dirfd is AT_FDCWD) and interns it. buf is scratch space that
// one walker reuses across a batch, since nearly every answer is "none".
func (w *walker) recordACL(dirfd int, dir, name string, st *unix.Stat_t, buf []byte) uint32 {
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		// Symlinks have no ACL of their own; access is checked on the target.
		return 0
	}
	var a ACL
	get := func(attr string) []byte {
		v, err := w.xattr(dirfd, dir, name, st.Dev, attr, buf)
		if err != nil {
			a.Unrecorded = true
			w.opts.Logger.Debug().Str("path", filepath.Join(dir, name)).Str("xattr", attr).Err(err).
				Msg("walk: access control unreadable; shared mounts serve the entry to its owner only")
		}
		return v
	}
	a.Access = get(XattrACLAccess)
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.Default = get(XattrACLDefault)
	}
	if v := get(xattrNFS4ACL); v != nil && !nfs4Trivial(v) {
		a.Unrecorded = true
	}
	for _, v := range []*[]byte{&a.Access, &a.Default} {
		if *v != nil && !validPOSIXACL(*v) {
			*v = nil
			a.Unrecorded = true
		}
	}
	return w.b.InternACL(a)
}

// xattr returns a copy of the value of attr on the entry, nil when it has
// none or its filesystem does not support attr.
func (w *walker) xattr(dirfd int, dir, name string, dev uint64, attr string, buf []byte) ([]byte, error) {
	key := xattrKey{dev, attr}
	if _, ok := w.caps.unsupported.Load(key); ok {
		return nil, nil
	}
	for {
		n, err := w.getxattr(dirfd, dir, name, attr, buf)
		switch {
		case err == nil:
			return append([]byte(nil), buf[:n]...), nil
		case errors.Is(err, unix.ENODATA):
			return nil, nil
		case errors.Is(err, unix.EOPNOTSUPP):
			w.caps.unsupported.Store(key, struct{}{})
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < xattrSizeMax:
			// Larger than the first guess: the kernel's limit always fits.
			buf = make([]byte, xattrSizeMax)
		default:
			return nil, err
		}
	}
}

func (w *walker) getxattr(dirfd int, dir, name, attr string, dest []byte) (int, error) {
	var n int
	err := sysx.RetryEINTR(func() (err error) {
		if dirfd != unix.AT_FDCWD && !w.caps.noAt.Load() {
			n, err = getxattrat(dirfd, name, attr, dest)
			// ENOSYS before Linux 6.13; EPERM from a seccomp filter that
			// does not know the call (container runtimes).
			if err != unix.ENOSYS && err != unix.EPERM {
				return err
			}
			w.caps.noAt.Store(true)
		}
		if dirfd == unix.AT_FDCWD {
			// The walk's root, which Walk stats following symlinks.
			n, err = unix.Getxattr(name, attr, dest)
			return err
		}
		n, err = unix.Lgetxattr(filepath.Join(dir, name), attr, dest)
		return err
	})
	if err != nil {
		return 0, &os.SyscallError{Syscall: "getxattr " + attr, Err: err}
	}
	return n, nil
}

// xattrArgs is the kernel's struct xattr_args.
type xattrArgs struct {
	value uint64
	size  uint32
	flags uint32
}

// getxattrat reads attr of name relative to dirfd without following a
// symlink, like the walk's fstatat, so the source resolves one name, not
// the whole path.
func getxattrat(dirfd int, name, attr string, dest []byte) (int, error) {
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return 0, err
	}
	a, err := unix.BytePtrFromString(attr)
	if err != nil {
		return 0, err
	}
	args := xattrArgs{size: uint32(len(dest))}
	if len(dest) > 0 {
		args.value = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(dest))))
	}
	r, _, e := unix.Syscall6(unix.SYS_GETXATTRAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)),
		unix.AT_SYMLINK_NOFOLLOW, uintptr(unsafe.Pointer(a)), uintptr(unsafe.Pointer(&args)), unsafe.Sizeof(args))
	runtime.KeepAlive(dest)
	runtime.KeepAlive(p)
	runtime.KeepAlive(a)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
