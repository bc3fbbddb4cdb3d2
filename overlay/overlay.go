// Package overlay composes a writable view over cachefs's read-only mount:
// the kernel's overlayfs (for root) or fuse-overlayfs (for other users)
// stacks an upper layer on node-local disk over the read-only view, so
// clients can lock, create, rename and rewrite while the snapshot's files
// are still served by the block cache below.
//
// # Layout
//
// Everything lives in CACHE/writable, a private directory (package privdir:
// mode 0700, owned by the effective uid, never a symlink):
//
//	lower/       the read-only cachefs mount, reachable by nobody else
//	upper/       the changes: new and copied-up files, whiteouts
//	work/        overlayfs's scratch directory
//	base.index   the snapshot the changes were made against, for push
//
// # Invariants
//
//   - No change reaches SOURCE: the lower layer is the read-only mount, and
//     overlayfs writes only to upper/ and work/.
//   - The view's root takes its owner and mode from upper/. A mount only
//     its user may reach gets a 0700 root of that user's, so a kernel
//     overlay (which any user can enter) is closed to others as the private
//     FUSE mount below it is; a shared mount copies the source root's owner
//     and mode, and the kernel checks every entry's mode and ACLs below.
//   - Directory renames of the read-only layer fail with EXDEV
//     (redirect_dir=off) and copy-up copies data and metadata together
//     (metacopy=off), so upper/ holds whole files and plain directories
//     that push can copy without reading overlayfs's private xattrs.
package overlay

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/cachefs/cachefs/privdir"
	"golang.org/x/sys/unix"
)

// Kinds of writable view.
const (
	KindKernel = "overlay"        // the kernel's overlayfs; needs CAP_SYS_ADMIN
	KindFuse   = "fuse-overlayfs" // the FUSE implementation, for other users
)

// FsName is the source field mountinfo shows for a kernel writable view
// (fuse-overlayfs ignores the name it is given).
const FsName = "cachefs-writable"

// ErrUnavailable is returned when neither implementation can be used.
var ErrUnavailable = errors.New("overlay: no writable view available")

// Layout names the directories of one writable view.
type Layout struct {
	Dir   string // CACHE/writable
	Lower string
	Upper string
	Work  string
	Base  string // the base snapshot's index file
}

// Prepare creates or adopts CACHE/writable and the directories in it.
// cacheDir must already be a verified private directory. rootUID, rootGID
// and rootMode set the view's root (see the package comment); an upper
// layer kept from an earlier mount is adopted with its contents.
func Prepare(cacheDir string, rootUID, rootGID, rootMode uint32) (Layout, error) {
	dir, err := privdir.Make(cacheDir, "writable")
	if err != nil {
		return Layout{}, fmt.Errorf("overlay: %w", err)
	}
	l := LayoutOf(dir)
	for _, p := range []string{l.Lower, l.Upper, l.Work} {
		if strings.ContainsAny(p, ",:\\") {
			return Layout{}, fmt.Errorf("overlay: %s: a cache directory for --writable must not contain ',', ':' or '\\'", p)
		}
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return Layout{}, fmt.Errorf("overlay: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	defer unix.Close(fd)
	for _, name := range []string{"lower", "upper", "work"} {
		if err := subdir(fd, name); err != nil {
			return Layout{}, fmt.Errorf("overlay: %s: %w", filepath.Join(dir, name), err)
		}
	}
	if os.Geteuid() == 0 {
		if err := unix.Fchownat(fd, "upper", int(rootUID), int(rootGID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return Layout{}, fmt.Errorf("overlay: chown %s: %w", l.Upper, err)
		}
	}
	if err := unix.Fchmodat(fd, "upper", rootMode&0o7777, 0); err != nil {
		return Layout{}, fmt.Errorf("overlay: chmod %s: %w", l.Upper, err)
	}
	return l, nil
}

// subdir makes name in the private directory fd, or adopts it if it is a
// directory (nobody else can have created it: fd is ours alone).
func subdir(fd int, name string) error {
	err := unix.Mkdirat(fd, name, 0o700)
	if err != nil && err != unix.EEXIST {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errors.New("is not a directory")
	}
	return nil
}

// Choose picks the implementation: the kernel's for a process that may
// mount it, fuse-overlayfs otherwise. why explains a refusal.
func Choose() (kind string, err error) {
	if os.Geteuid() == 0 && kernelHas() {
		return KindKernel, nil
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		return KindFuse, nil
	}
	if os.Geteuid() == 0 {
		return "", fmt.Errorf("%w: this kernel has no overlayfs and fuse-overlayfs is not installed (apt-get install fuse-overlayfs)", ErrUnavailable)
	}
	return "", fmt.Errorf("%w: only root may mount the kernel's overlayfs, and fuse-overlayfs is not installed (apt-get install fuse-overlayfs)", ErrUnavailable)
}

// kernelHas reports whether overlayfs is registered or can be loaded.
func kernelHas() bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err == nil && strings.Contains(string(b), "\toverlay\n") {
		return true
	}
	// modprobe loads it on first mount on most distributions.
	_, err = os.Stat("/sys/module/overlay")
	return err == nil || exec.Command("modprobe", "-q", "overlay").Run() == nil
}

// options are the overlay mount options for l.
func (l Layout) options() string {
	return "lowerdir=" + l.Lower + ",upperdir=" + l.Upper + ",workdir=" + l.Work
}

// Mount stacks the writable view of l at target. The lower layer must be
// mounted already.
func Mount(kind string, l Layout, target string, allowOther bool) error {
	switch kind {
	case KindKernel:
		opts := l.options() + ",redirect_dir=off,metacopy=off,index=off,xino=off"
		if err := unix.Mount(FsName, target, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
			return fmt.Errorf("overlay: mount at %s: %w", target, err)
		}
		return nil
	case KindFuse:
		// fuse-overlayfs serves in the background once the mount is up.
		// Without allow_other only this user reaches it, as the private
		// mount below.
		opts := l.options()
		if allowOther {
			opts += ",allow_other,default_permissions"
		}
		out, err := exec.Command("fuse-overlayfs", "-o", opts, target).CombinedOutput()
		if err != nil {
			return fmt.Errorf("overlay: fuse-overlayfs at %s: %v: %s", target, err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	return fmt.Errorf("overlay: unknown kind %q", kind)
}

// IsWritableFSType reports whether a mountinfo file system type is a
// writable view's.
func IsWritableFSType(t string) bool {
	return t == KindKernel || t == "fuse."+KindFuse
}
