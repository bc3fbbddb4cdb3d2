package blockcache

import (
	"context"
	"sync/atomic"
)

// fusefs gives back files it holds without readers sooner while their
// content says it is crowded.
var _ interface{ Crowded() bool } = (*Handle)(nil)

// Handle is one open of a cached file.
type Handle struct {
	st      *fileState
	lastEnd atomic.Int64
	closed  atomic.Bool
}

// ReadAt reads p at off, fetching missing blocks. It returns fewer bytes
// than len(p) only at the end of the file.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	st := h.st
	size := st.key.Size
	if off >= size || len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	bs := st.c.opts.BlockSize
	storing := true
	for pos := off; pos < end; {
		b := pos / bs
		bStart := b * bs
		hi := min(end, bStart+bs)
		dst := p[pos-off : hi-off]
		if st.readHit(b, dst, pos-bStart) {
			st.c.hits.Add(1)
			st.c.fromCache.Add(int64(len(dst)))
		} else if kept := st.c.unstored.get(st, b); kept != nil {
			copy(dst, kept[pos-bStart:])
			st.c.uncached.Add(int64(len(dst)))
		} else if storing = st.c.storing(min(bs, size-bStart)); !storing {
			// Nothing fetched now would be kept: read just what was asked.
			if err := st.readSource(dst, pos); err != nil {
				return 0, err
			}
			st.c.uncached.Add(int64(len(dst)))
		} else {
			st.c.demand.Add(1)
			data, err := st.fetch(ctx, b, false)
			st.c.demand.Add(-1)
			if err != nil {
				return 0, err
			}
			copy(dst, data[pos-bStart:])
		}
		pos = hi
	}
	if storing {
		h.readAhead(off, end)
	}
	return int(end - off), nil
}

// readHit fills dst from block b's stored bytes at offset in, checking
// the block first if this process has not yet.
func (st *fileState) readHit(b int64, dst []byte, in int64) bool {
	ok, buf := st.trusted(b)
	if !ok {
		return false
	}
	if buf != nil {
		copy(dst, buf[in:])
		st.c.putBuf(buf)
		return true
	}
	return st.readCached(dst, b*st.c.opts.BlockSize+in) == nil
}

// readAhead fetches the next blocks in the background when reads are
// sequential. A full semaphore skips read-ahead rather than queueing it, so
// demand reads never wait behind it.
func (h *Handle) readAhead(off, end int64) {
	prev := h.lastEnd.Swap(end)
	st := h.st
	if off == 0 || off != prev || st.c.opts.ReadAhead == 0 {
		return
	}
	bs := st.c.opts.BlockSize
	first := (end-1)/bs + 1
	asked := false
	for b := first; b < first+int64(st.c.opts.ReadAhead) && b < st.nblocks; b++ {
		if st.has(b) {
			continue
		}
		// Asked once, and only when a block is missing: the hit path
		// that calls this stays off the cache's lock. A block fetched
		// ahead and then not stored would be fetched again when read.
		if !asked {
			if asked = true; !st.c.storing(bs) {
				return
			}
		}
		if !st.c.raSem.TryAcquire(1) {
			continue
		}
		st.c.hold(st)
		go func(b int64) {
			defer st.c.raSem.Release(1)
			defer st.c.release(st)
			// Read-ahead is a guess: a block it fails to fetch is fetched,
			// or its error reported, when a reader asks for it.
			_, _ = st.fetch(context.Background(), b, false)
		}(b)
	}
}

// checkRange makes sure blocks first..last are present and checked; false
// if any is not (then the caller reads the ordinary way, which fetches).
func (st *fileState) checkRange(first, last int64) bool {
	st.mu.RLock()
	all := true
	for b := first; b <= last && all; b++ {
		all = st.checked.has(b)
	}
	st.mu.RUnlock()
	if all {
		return true
	}
	for b := first; b <= last; b++ {
		ok, buf := st.trusted(b)
		st.c.putBuf(buf)
		if !ok {
			return false
		}
	}
	return true
}

// CachedFd returns a descriptor holding bytes [off, off+n) when all of them
// are stored and checked, so the caller can splice them instead of
// copying. The descriptor stays valid while the handle is open.
func (h *Handle) CachedFd(off int64, n int) (uintptr, bool) {
	st := h.st
	if st.key.Size == 0 || off >= st.key.Size {
		return 0, false
	}
	end := min(off+int64(n), st.key.Size)
	bs := st.c.opts.BlockSize
	first, last := off/bs, (end-1)/bs
	if !st.checkRange(first, last) {
		return 0, false
	}
	st.mu.RLock()
	data := st.data
	st.mu.RUnlock()
	if data == nil || !st.checkLength(data) {
		return 0, false
	}
	st.c.hits.Add(last - first + 1)
	st.c.fromCache.Add(end - off)
	// A sequential reader whose reads land on blocks fetched ahead is
	// served here; read-ahead must follow it, or its next miss waits.
	h.readAhead(off, end)
	return data.Fd(), true
}

// PassthroughFd offers the data file for kernel passthrough when every
// block is stored and checked: reads then never reach this process.
func (h *Handle) PassthroughFd() (int, bool) {
	st := h.st
	st.mu.RLock()
	complete, unchecked := st.present == st.nblocks, st.nChecked < st.nblocks
	st.mu.RUnlock()
	if !complete || st.nblocks == 0 {
		return 0, false
	}
	if unchecked && st.key.Size <= passthroughCheckMax {
		// The kernel would read unchecked blocks without asking: check
		// the whole file now. The reads fill the page cache the kernel is
		// about to read from.
		if !st.checkRange(0, st.nblocks-1) {
			return 0, false
		}
	}
	st.mu.RLock()
	data := st.data
	ready := data != nil && st.present == st.nblocks && st.nChecked == st.nblocks
	st.mu.RUnlock()
	if !ready || !st.checkLength(data) {
		return 0, false
	}
	st.c.passthrough.Add(1)
	return int(data.Fd()), true
}

// passthroughCheckMax is the largest file whose unchecked blocks are all
// checked at open so that it can be passed through; a larger one is served
// by the daemon, block by block, until its blocks have been read once.
const passthroughCheckMax = 64 << 20

// Close releases the handle; the state's descriptors close with the last.
func (h *Handle) Close() error {
	if h.closed.CompareAndSwap(false, true) {
		h.st.c.release(h.st)
	}
	return nil
}

// Crowded reports whether the cache's budget is taken by open files: a
// caller holding this handle with no reader should give it back soon.
func (h *Handle) Crowded() bool { return h.st.c.Crowded() }
