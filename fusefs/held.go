package fusefs

import (
	"container/list"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// heldReaders keeps one Reader per file for reads that arrive without a
// file handle, as they all do once the kernel opens files itself (see
// Mount.KernelOpens). The kernel then never says when a file is closed, so
// a Reader is given back when no read has reached the daemon for
// heldIdle, or when more than heldMax files are held (least recently used
// first). When the content says it is crowded (its budget is all files
// held open), files no read has touched for crowdedIdle go back as well,
// so a small cache budget frees what jobs have moved on from. A Reader is never closed while a read through it is in flight,
// including the splice of its reply, which happens after Read returns: the
// reply's Done gives the reference back.
//
// Lock order: heldReaders.mu, then whatever a Reader's Crowded takes;
// Readers are opened and closed outside it.
type heldReaders struct {
	open func(idx uint32) (Reader, error)
	// onNew hears of each Reader opened, as an open would be heard of.
	onNew func(idx uint32)
	// closeR gives a Reader back and reports a failure.
	closeR func(idx uint32, r Reader)
	idle   time.Duration
	max    int
	// crowdedIdle is how long an unread Reader is kept while Readers
	// say they are crowded (see crowdedReader).
	crowdedIdle time.Duration

	mu sync.Mutex
	m  map[uint32]*held
	// idleList holds the unreferenced entries, least recently released
	// first: the order both the cap and the reaper give them back in.
	idleList *list.List
	done     chan struct{}
	wg       sync.WaitGroup
}

type held struct {
	idx  uint32
	r    Reader
	refs int
	last time.Time
	idle *list.Element // in idleList while refs == 0
}

const (
	// heldIdle is how long a file may go without a read reaching the
	// daemon before its Reader, and with it the cache's claim that the file
	// is open, is given back. Reads served from the page cache never reach
	// the daemon, so a file read whole once looks idle at once.
	heldIdle = 30 * time.Second
	// heldMax bounds the Readers held, and so the descriptors: a cached
	// file holds its data file and presence log open.
	heldMax = 1024
	// heldCrowdedIdle is the shorter idle time of a crowded content:
	// long enough for the gaps between a sequential reader's requests,
	// short enough that a job moving through files frees the budget.
	heldCrowdedIdle = 2 * time.Second
)

// crowdedReader is a Reader whose content would rather have files given
// back soon: its budget is taken by files that are held.
type crowdedReader interface {
	Crowded() bool
}

func newHeldReaders(open func(uint32) (Reader, error), onNew func(uint32), closeR func(uint32, Reader), idle time.Duration, max int) *heldReaders {
	return newHeldReadersCrowded(open, onNew, closeR, idle, min(idle, heldCrowdedIdle), max)
}

func newHeldReadersCrowded(open func(uint32) (Reader, error), onNew func(uint32), closeR func(uint32, Reader), idle, crowdedIdle time.Duration, max int) *heldReaders {
	h := &heldReaders{open: open, onNew: onNew, closeR: closeR, idle: idle, crowdedIdle: crowdedIdle, max: max,
		m: map[uint32]*held{}, idleList: list.New(), done: make(chan struct{})}
	h.wg.Add(1)
	go h.reap()
	return h
}

// acquire returns idx's Reader with a reference the caller must release.
func (h *heldReaders) acquire(idx uint32) (*held, error) {
	h.mu.Lock()
	e := h.m[idx]
	if e != nil {
		h.refLocked(e)
		h.mu.Unlock()
		return e, nil
	}
	h.mu.Unlock()
	r, err := h.open(idx)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	if e = h.m[idx]; e != nil {
		// Another read opened it meanwhile; keep one.
		h.refLocked(e)
		h.mu.Unlock()
		h.closeR(idx, r)
		return e, nil
	}
	e = &held{idx: idx, r: r, refs: 1}
	h.m[idx] = e
	var surplus []*held
	if len(h.m) > h.max {
		surplus = h.oldestIdleLocked(len(h.m) - h.max)
	}
	h.mu.Unlock()
	h.closeAll(surplus)
	if h.onNew != nil {
		h.onNew(idx)
	}
	return e, nil
}

func (h *heldReaders) refLocked(e *held) {
	if e.refs == 0 && e.idle != nil {
		h.idleList.Remove(e.idle)
		e.idle = nil
	}
	e.refs++
}

func (h *heldReaders) release(e *held) {
	h.mu.Lock()
	e.refs--
	if e.refs == 0 {
		e.last = time.Now()
		e.idle = h.idleList.PushBack(e)
	}
	h.mu.Unlock()
}

// oldestIdleLocked removes up to n unreferenced entries, least recently
// released first.
func (h *heldReaders) oldestIdleLocked(n int) []*held {
	var out []*held
	for ; n > 0 && h.idleList.Len() > 0; n-- {
		e := h.idleList.Remove(h.idleList.Front()).(*held)
		e.idle = nil
		delete(h.m, e.idx)
		out = append(out, e)
	}
	return out
}

func (h *heldReaders) reap() {
	defer h.wg.Done()
	t := time.NewTicker(h.crowdedIdle / 2)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case now := <-t.C:
			var idle []*held
			h.mu.Lock()
			limit := h.idle
			if f := h.idleList.Front(); f != nil && now.Sub(f.Value.(*held).last) >= h.crowdedIdle && crowded(f.Value.(*held).r) {
				limit = h.crowdedIdle
			}
			for f := h.idleList.Front(); f != nil && now.Sub(f.Value.(*held).last) >= limit; f = h.idleList.Front() {
				idle = append(idle, h.oldestIdleLocked(1)...)
			}
			h.mu.Unlock()
			h.closeAll(idle)
		}
	}
}

// crowded asks a Reader whether its content is crowded; the answer is the
// content's, so one Reader speaks for all.
func crowded(r Reader) bool {
	c, ok := r.(crowdedReader)
	return ok && c.Crowded()
}

// close gives back every Reader; the mount is gone, so no read is in flight.
func (h *heldReaders) close() {
	close(h.done)
	h.wg.Wait()
	h.mu.Lock()
	all := make([]*held, 0, len(h.m))
	for _, e := range h.m {
		all = append(all, e)
	}
	clear(h.m)
	h.idleList.Init()
	h.mu.Unlock()
	h.closeAll(all)
}

// count is the number of Readers held; for tests and status.
func (h *heldReaders) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.m)
}

func (h *heldReaders) closeAll(es []*held) {
	for _, e := range es {
		h.closeR(e.idx, e.r)
	}
}

// splicedResult is a reply spliced from a descriptor that must stay open
// until go-fuse has written it: Done runs after the write.
type splicedResult struct {
	fd   uintptr
	off  int64
	n    int
	done func()
}

var _ fuse.ReadResult = (*splicedResult)(nil)

func (r *splicedResult) Seekable() (uintptr, int64, int) { return r.fd, r.off, r.n }

// Bytes is go-fuse's fallback when splicing is not possible.
func (r *splicedResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	return fuse.ReadResultFd(r.fd, r.off, r.n).Bytes(buf)
}

func (r *splicedResult) Size() int { return r.n }

func (r *splicedResult) Done() {
	if r.done != nil {
		r.done()
		r.done = nil
	}
}
