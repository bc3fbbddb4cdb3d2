package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cachefs/cachefs/blockcache"
	cfs "github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// cacheContent serves the mount's files from the block cache, keyed by the
// identity the snapshot recorded.
type cacheContent struct {
	snap  *snapshot.Snapshot
	cache *blockcache.Cache
}

func (c cacheContent) Open(idx uint32) (cfs.Reader, error) {
	return c.cache.OpenFile(c.key(idx))
}

// parseCacheSize reads "50G", "500GiB" or "80%" (of the filesystem holding
// dir).
func parseCacheSize(s, dir string) (int64, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || p <= 0 || p > 100 {
			return 0, fmt.Errorf("--cache-size %q: want a share from 0 to 100%%", s)
		}
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return 0, fmt.Errorf("--cache-size %q: %w", s, err)
		}
		return int64(float64(st.Blocks) * float64(st.Bsize) * p / 100), nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("--cache-size %q: want a size such as 50G or 500GiB, or a share such as 80%%", s)
	}
	return int64(n), nil
}

func openCache(log zerolog.Logger, o *mountOptions, src, mnt string, rootDev uint64) (*blockcache.Cache, error) {
	size, err := parseCacheSize(o.cacheSize, o.cacheDir)
	if err != nil {
		return nil, usageError(err)
	}
	bs, err := humanize.ParseBytes(o.blockSize)
	if err != nil || bs < 4096 || bs > 64<<20 || bs&(bs-1) != 0 {
		return nil, usageError(fmt.Errorf("--block-size %q: want a power of two from 4KiB to 64MiB", o.blockSize))
	}
	ra := o.readAhead
	if ra <= 0 {
		ra = -1 // blockcache reads 0 as "default"
	}
	source, err := blockcache.NewDirSource(src, rootDev)
	if err != nil {
		return nil, withCode(exitSource, err)
	}
	c, err := blockcache.Open(blockcache.Options{
		Dir:       o.cacheDir,
		BlockSize: int64(bs),
		MaxBytes:  size,
		ReadAhead: ra,
		Owner:     fmt.Sprintf("cachefs pid %d serving %s at %s", os.Getpid(), src, mnt),
		Logger:    log,
	}, source)
	if err != nil {
		source.Close()
		if errors.Is(err, blockcache.ErrLocked) {
			return nil, withCode(exitCacheDir, fmt.Errorf("%w; give this mount its own --cache-dir", err))
		}
		return nil, withCode(exitCacheDir, err)
	}
	log.Info().Str("cache_dir", o.cacheDir).Int64("budget", size).Uint64("block_size", bs).Msg("block cache ready")
	return c, nil
}

func (c cacheContent) key(idx uint32) blockcache.Key {
	a := c.snap.Attr(idx)
	return blockcache.Key{Path: c.snap.Path(idx), Ino: a.Ino, Size: a.Size, Mtime: a.Mtime}
}

// warm fetches idx whole into the cache at background priority.
func (c cacheContent) warm(ctx context.Context, idx uint32) (int64, error) {
	n, err := c.cache.Warm(ctx, c.key(idx))
	return n, forPrefetch(err)
}

// forPrefetch restates the cache's refusals as the sentinels package
// prefetch acts on.
func forPrefetch(err error) error {
	switch {
	case errors.Is(err, blockcache.ErrNoRoom):
		return fmt.Errorf("%w: %w", prefetch.ErrNoRoom, err)
	case errors.Is(err, blockcache.ErrBusy):
		return fmt.Errorf("%w: %w", prefetch.ErrBusy, err)
	}
	return err
}

func (c cacheContent) cached(idx uint32) bool { return c.cache.Cached(c.key(idx)) }

// prefetchWarmer adapts cacheContent to prefetch.Warmer.
type prefetchWarmer struct{ c cacheContent }

func (w prefetchWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	n, err := w.c.cache.Prefetch(ctx, w.c.key(idx))
	return n, forPrefetch(err)
}
