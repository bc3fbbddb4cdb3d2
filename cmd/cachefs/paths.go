package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// resolvePath makes p absolute and resolves every symlink in it, as
// filepath.EvalSymlinks does, so that a mount made through a link is known
// by the path the kernel records in mountinfo, and "is it inside" checks
// compare real paths. Unlike EvalSymlinks it never stats the last
// component: that may be the root of a FUSE mount whose daemon is dead or
// stopped, where a stat fails or hangs while readlink is answered by the
// kernel alone. Components that do not exist yet are kept as given, so a
// mountpoint still to be created resolves too.
func resolvePath(p string) (string, error) {
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
			dir, err = resolvePath(filepath.Dir(p))
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

// resolveParent is resolvePath for a path whose last component must not be
// followed: only the directories above it are resolved.
func resolveParent(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	dir, err := resolvePath(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// resolveAll resolves each non-empty path in place. A path on a hung
// filesystem blocks its resolution in the kernel, so it runs aside and
// Ctrl-C still returns at once.
func resolveAll(ctx context.Context, paths ...*string) error {
	done := make(chan error, 1)
	out := make([]string, len(paths))
	go func() {
		for i, p := range paths {
			if *p == "" {
				continue
			}
			r, err := resolvePath(*p)
			if err != nil {
				done <- usageError(err)
				return
			}
			out[i] = r
		}
		done <- nil
	}()
	select {
	case <-ctx.Done():
		return withCode(exitInterrupted, errors.New("interrupted while resolving paths; nothing mounted"))
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

// within reports whether path is dir or below it. Both must be resolved
// (resolvePath): a symlink would hide that one is inside the other.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}
