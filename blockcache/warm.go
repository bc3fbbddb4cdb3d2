package blockcache

import (
	"context"
	"errors"
	"time"
)

// ErrNoRoom means a background fetch was not started because storing it
// would evict data this run has used.
var ErrNoRoom = errors.New("cache budget is taken by recently used data")

// backgroundBesideDemand is how many bytes of background fetches may be in
// flight while a reader waits on a demand fetch. A shared filesystem serves
// small requests in parallel at the cost of their latency, so a few small
// background reads delay no one; a large one takes bandwidth a waiting
// reader needs, so it waits until no reader does.
// With no reader waiting, background bytes in flight are still capped at
// backgroundMax, so a reader that arrives waits at most for that much to
// drain.
const (
	backgroundBesideDemand = 256 << 10
	backgroundMax          = 4 << 20
)

func (c *Cache) backgroundMayFetch(n int64) bool {
	inflight := c.bgBytes.Load()
	if inflight == 0 {
		return c.demand.Load() == 0 || n <= backgroundBesideDemand
	}
	switch d := c.demand.Load(); {
	case d == 0:
		return inflight+n <= backgroundMax
	case d < c.opts.DemandFirst:
		return inflight+n <= backgroundBesideDemand
	}
	return false
}

// Warm fetches every missing block of key's file at background priority
// (see backgroundMayFetch), waiting while demand reads hold it back, and
// stops with ErrNoRoom rather than evict recently used data. It also
// checks the blocks already stored, so a warmed file has no damaged block
// left and can be passed through. It returns the bytes it fetched.
func (c *Cache) Warm(ctx context.Context, key Key) (int64, error) {
	return c.warm(ctx, key, true, nil)
}

// ErrBusy means a background fetch must wait for demand reads to finish;
// Prefetch returns it instead of waiting.
var ErrBusy = errors.New("background fetch held back by demand reads")

// Prefetch is Warm for a queue of files: where Warm would wait for demand
// reads to finish before a large block, it returns ErrBusy (with the bytes
// fetched so far), so the caller can fetch smaller files meanwhile and come
// back to this one. It does not read stored blocks back to check them:
// their first read does, and a queue over a large warm cache would
// otherwise read all of it from the cache disk.
func (c *Cache) Prefetch(ctx context.Context, key Key) (int64, error) {
	return c.warm(ctx, key, false, nil)
}

// PrefetchWhole is Prefetch that also hands got the bytes of a file of one
// block when it fetched them from the source, as stored, so the caller can
// pass them on without reading them back. got must not keep the slice.
func (c *Cache) PrefetchWhole(ctx context.Context, key Key, got func([]byte)) (int64, error) {
	return c.warm(ctx, key, false, got)
}

func (c *Cache) warm(ctx context.Context, key Key, wait bool, got func([]byte)) (int64, error) {
	h, err := c.OpenFile(key)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	st := h.st
	var fetched int64
	for b := int64(0); b < st.nblocks; b++ {
		if !wait && (st.has(b) || c.opts.PrefetchBlock != nil && !c.opts.PrefetchBlock(key, b)) {
			continue
		}
		ok, buf := st.trusted(b)
		c.putBuf(buf)
		if ok {
			continue
		}
		n := min(c.opts.BlockSize, st.key.Size-b*c.opts.BlockSize)
		for !c.backgroundMayFetch(n) {
			if !wait {
				return fetched, ErrBusy
			}
			select {
			case <-ctx.Done():
				return fetched, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		c.bgBytes.Add(n)
		data, err := st.fetch(ctx, b, true)
		c.bgBytes.Add(-n)
		if err != nil {
			return fetched, err
		}
		if got != nil && st.nblocks == 1 && int64(len(data)) == st.key.Size {
			got(data)
		}
		fetched += int64(len(data))
	}
	return fetched, nil
}

// Cached reports whether every block of key's file is stored.
func (c *Cache) Cached(key Key) bool {
	if key.Size == 0 {
		return true
	}
	h, err := c.OpenFile(key)
	if err != nil {
		return false
	}
	defer h.Close()
	h.st.mu.RLock()
	defer h.st.mu.RUnlock()
	return h.st.present == h.st.nblocks
}
