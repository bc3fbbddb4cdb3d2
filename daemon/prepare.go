package daemon

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cachefs/cachefs/internal/sysx"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/privdir"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// prepare checks the source and mountpoint and creates what is missing, so
// that every bad input fails before anything is walked or mounted.
//
// It returns the source root's stat, the one getattr of the source that a
// mount from an index makes, so nothing later needs to stat it again.
func prepare(log zerolog.Logger, c *Config) (unix.Stat_t, error) {
	st, err := CheckSource(c.Source)
	if err != nil {
		return st, err
	}
	src, mnt := c.Source, c.Mountpoint
	switch {
	case mounttable.Within(src, mnt):
		return st, fail(ErrMountpoint, fmt.Errorf("mountpoint %s would hide the source %s", mnt, src))
	case mounttable.Within(mnt, src):
		return st, fail(ErrMountpoint, fmt.Errorf("mountpoint %s is inside the source %s: the mount would hide part of the source", mnt, src))
	case mounttable.Within(c.CacheDir, mnt) || mounttable.Within(c.LogFile, mnt):
		return st, fail(ErrCacheDir, fmt.Errorf("cache directory %s is inside the mountpoint %s", c.CacheDir, mnt))
	}
	if err := prepareMountpoint(log, mnt); err != nil {
		return st, err
	}
	return st, makeDirs(c)
}

// CheckSource stats the source root: it must be a directory this process
// may list.
func CheckSource(src string) (st unix.Stat_t, err error) {
	if err := sysx.RetryEINTR(func() error { return unix.Stat(src, &st) }); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return st, fail(ErrSource, fmt.Errorf("source %s does not exist", src))
		}
		return st, fail(ErrSource, fmt.Errorf("source %s: %w", src, err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return st, fail(ErrSource, fmt.Errorf("source %s is not a directory", src))
	}
	if err := sysx.RetryEINTR(func() error { return unix.Access(src, unix.R_OK|unix.X_OK) }); err != nil {
		return st, fail(ErrSource, fmt.Errorf("source %s is not readable: %w", src, err))
	}
	return st, nil
}

// prepareMountpoint cleans a dead mount at mnt, refuses a live one, and
// makes mnt an empty directory.
func prepareMountpoint(log zerolog.Logger, mnt string) error {
	if mounttable.IsStale(mnt) {
		if err := mounttable.Detach(mnt, true); err != nil {
			return fail(ErrMounted, fmt.Errorf("mountpoint %s holds a dead mount that could not be cleaned: %w", mnt, err))
		}
		log.Warn().Str("mountpoint", mnt).Msg("cleaned a mount left behind by a daemon that died")
	}
	if me, ok, err := mounttable.Find(mnt); err != nil {
		return err
	} else if ok {
		return fail(ErrMounted, fmt.Errorf("mountpoint %s is already mounted (%s from %s)", mnt, me.FSType, me.Source))
	}
	if err := parentsOurs(mnt); err != nil {
		return fail(ErrMountpoint, err)
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return fail(ErrMountpoint, fmt.Errorf("mountpoint %s: %w", mnt, err))
	}
	f, err := openOurs(mnt)
	switch {
	case errors.Is(err, unix.ENOTDIR):
		return fail(ErrMountpoint, fmt.Errorf("mountpoint %s is not a directory", mnt))
	case errors.Is(err, unix.ELOOP):
		return fail(ErrMountpoint, fmt.Errorf("mountpoint %s became a symlink", mnt))
	case err != nil:
		return fail(ErrMountpoint, err)
	}
	names, err := f.Readdirnames(1)
	f.Close()
	switch {
	case len(names) > 0:
		return fail(ErrMountpoint, fmt.Errorf("mountpoint %s is not empty", mnt))
	case err != nil && !errors.Is(err, io.EOF):
		return fail(ErrMountpoint, fmt.Errorf("mountpoint %s: %w", mnt, err))
	}
	return nil
}

// makeDirs makes the directories the daemon writes in before anything is
// mounted, so a planted one fails the mount. The cache holds copies of
// files other users may not read, and the control socket lives in it; the
// runtime directory holds the record unmount trusts.
func makeDirs(c *Config) error {
	if err := makeCacheDir(c); err != nil {
		return err
	}
	if _, err := c.Runtime.Make(); err != nil {
		return fail(ErrCacheDir, fmt.Errorf("runtime dir: %w%s", err, hint(err, "; remove it", "")))
	}
	return nil
}

// hint is the advice appended to a refusal from privdir: mine for a
// directory cachefs makes, which its owner can remove, shared for the
// parent or above, which are not cachefs's.
func hint(err error, mine, shared string) string {
	var pe *privdir.Error
	switch {
	case !errors.As(err, &pe):
		return ""
	case pe.Shared:
		return shared
	}
	return mine
}

// makeCacheDir creates or adopts the cache directory: a default one by
// privdir's rule for directories under a shared parent, one the user named
// by the rule for explicit directories.
func makeCacheDir(c *Config) error {
	if c.CacheUnder == "" {
		if err := privdir.Adopt(c.CacheDir); err != nil {
			return fail(ErrCacheDir, fmt.Errorf("cache dir: %w%s", err, hint(err, "; pass a --cache-dir of your own", "")))
		}
		return nil
	}
	rel, err := filepath.Rel(c.CacheUnder, c.CacheDir)
	if err != nil {
		return fail(ErrCacheDir, fmt.Errorf("cache dir: %w", err))
	}
	if _, err := privdir.Make(c.CacheUnder, strings.Split(rel, "/")...); err != nil {
		return fail(ErrCacheDir, fmt.Errorf("cache dir: %w%s", err, hint(err, "; remove it or pass --cache-dir", "; pass --cache-dir")))
	}
	return nil
}
