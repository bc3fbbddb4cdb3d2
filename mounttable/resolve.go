package mounttable

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Resolve makes p absolute and resolves every symlink in it, as
// filepath.EvalSymlinks does, so that a mount made through a link is known
// by the path the kernel records in mountinfo, and "is it inside" checks
// compare real paths. Unlike EvalSymlinks it never stats the last
// component: that may be the root of a FUSE mount whose daemon is dead or
// stopped, where a stat fails or hangs while readlink is answered by the
// kernel alone. Components that do not exist yet are kept as given, so a
// mountpoint still to be created resolves too.
func Resolve(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	for hops := 0; hops <= 40; hops++ {
		if p == "/" {
			return p, nil
		}
		dir, err := filepath.EvalSymlinks(filepath.Dir(p))
		if errors.Is(err, os.ErrNotExist) {
			dir, err = Resolve(filepath.Dir(p))
		}
		if err != nil {
			return "", err
		}
		p = filepath.Join(dir, filepath.Base(p))
		target, err := os.Readlink(p)
		if err != nil {
			// Not a link (EINVAL), missing, or unreadable: the path is
			// as real as it gets; later checks report what is wrong.
			return p, nil
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(dir, target)
		}
		p = filepath.Clean(target)
	}
	return "", &os.PathError{Op: "resolve", Path: p, Err: unix.ELOOP}
}

// ResolveParent is Resolve for a path whose last component must not be
// followed: only the directories above it are resolved.
func ResolveParent(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	dir, err := Resolve(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// Within reports whether path is dir or below it. Both must be resolved
// (Resolve): a symlink would hide that one is inside the other.
func Within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// ErrInterrupted: the context ended while paths were being resolved.
var ErrInterrupted = errors.New("interrupted while resolving paths")

// ResolveAll resolves each non-empty path in place. A path on a hung
// filesystem blocks its resolution in the kernel, so it runs aside and the
// context's end returns at once (with ErrInterrupted).
func ResolveAll(ctx context.Context, paths ...*string) error {
	done := make(chan error, 1)
	out := make([]string, len(paths))
	go func() {
		for i, p := range paths {
			if *p == "" {
				continue
			}
			r, err := Resolve(*p)
			if err != nil {
				done <- err
				return
			}
			out[i] = r
		}
		done <- nil
	}()
	select {
	case <-ctx.Done():
		return ErrInterrupted
	case err := <-done:
		if err != nil {
			return err
		}
	}
	for i, p := range paths {
		if *p != "" {
			*p = out[i]
		}
	}
	return nil
}
