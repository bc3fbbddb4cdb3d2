package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/cachefs/cachefs/blockcache"
	cfs "github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// cacheContent serves the mount's files from the block cache, keyed by the
// identity the snapshot recorded.
type cacheContent struct {
	snap  *snapshot.Snapshot
	cache *blockcache.Cache
	pc    *pageCache // nil without a prefetcher
}

func (c cacheContent) Open(idx uint32) (cfs.Reader, error) {
	return c.cache.OpenFile(c.key(idx))
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

// prefetchWarmer adapts cacheContent to prefetch.Warmer; the small files
// it fetches whole go on to the kernel's page cache (pc).
type prefetchWarmer struct {
	c  cacheContent
	pc *pageCache
}

func (w prefetchWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	var data []byte
	n, err := w.c.cache.PrefetchWhole(ctx, w.c.key(idx), func(b []byte) { data = w.pc.copyOf(b) })
	if err == nil {
		w.pc.fetchedWhole(idx, data)
	}
	return n, forPrefetch(err)
}

// budget is the cache budget in bytes, a share measured on the filesystem
// that holds dir.
func (s CacheSize) budget(dir string) (int64, error) {
	if s.Percent == 0 {
		return s.Bytes, nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("--cache-size %g%%: %w", s.Percent, err)
	}
	return int64(float64(st.Blocks) * float64(st.Bsize) * s.Percent / 100), nil
}

// openCache opens the block cache over the source, shared with the job's
// other nodes when c.Peers says so (pr is nil otherwise).
func openCache(log zerolog.Logger, c *Config, rootDev uint64) (cache *blockcache.Cache, pr *peers, err error) {
	size, err := c.Cache.budget(c.CacheDir)
	if err != nil {
		return nil, nil, fail(ErrCacheDir, err)
	}
	ra := c.ReadAhead
	if ra <= 0 {
		ra = -1 // blockcache reads 0 as "default"
	}
	source, err := blockcache.NewDirSource(c.Source, rootDev)
	if err != nil {
		return nil, nil, fail(ErrSource, err)
	}
	shared, pr, err := sharePeers(log, c, source)
	if err != nil {
		_ = source.Close() // the peer setup's error is the one to report
		return nil, nil, err
	}
	cache, err = blockcache.Open(blockcache.Options{
		Dir:       c.CacheDir,
		BlockSize: c.BlockSize,
		MaxBytes:  size,
		ReadAhead: ra,
		Owner:     fmt.Sprintf("cachefs pid %d serving %s at %s", os.Getpid(), c.Source, c.Mountpoint),
		Logger:    log,

		PrefetchBlock: pr.prefetchBlock(), // nil without peers: every block
	}, shared)
	if err != nil {
		_ = source.Close() // the cache's error is the one to report
		pr.close()
		if errors.Is(err, blockcache.ErrLocked) {
			return nil, nil, fail(ErrCacheDir, fmt.Errorf("%w; give this mount its own --cache-dir", err))
		}
		return nil, nil, fail(ErrCacheDir, err)
	}
	log.Info().Str("cache_dir", c.CacheDir).Int64("budget", size).Int64("block_size", c.BlockSize).Msg("block cache ready")
	return cache, pr, nil
}
