package daemon

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// pageCache hands the kernel's page cache the small files the prefetcher
// fetched whole, so the job's first read of one is answered by the kernel
// with no round trip to the daemon: what a stage-in to local disk gets for
// free, since the copy leaves the files in the page cache. A file is handed
// over when its fetch ends, if the kernel already holds its inode, or else
// when the kernel first looks it up (the push needs the inode). Only the
// cache's checked bytes are handed over, never the source's directly, and
// the pushes run on a goroutine of their own: a push waits for pages that
// a read through the mount holds locked.
type pageCache struct {
	c   cacheContent
	max int64 // the largest file handed over
	m   kernelCache
	log zerolog.Logger
	// fetched marks the files the prefetcher fetched whole, pushed those
	// the kernel took; 1 bit each. A file is handed over once: a listing
	// with READDIRPLUS describes every file of a directory again.
	fetched, pushed []atomic.Uint64
	queue           chan pageCacheItem
	stop            chan struct{}
	// pending is the bytes queued with their data; past pageCacheHeld
	// the data is dropped and read back from the cache when its turn
	// comes.
	pending atomic.Int64
	wg      sync.WaitGroup
	files   atomic.Int64 // handed over
	bytes   atomic.Int64
}

// pageCacheQueue bounds the files waiting to be handed over; a full
// queue drops the push (the job's read then goes through the daemon).
// pageCacheMax is the largest file handed over (and at most a block): a
// file whose fetch is all latency, where a round trip per read is most of
// what the job pays.
const (
	pageCacheQueue = 4096
	pageCacheMax   = 128 << 10
	pageCacheHeld  = 32 << 20
	// lookupDelay is how long a hand-over asked for by a lookup waits,
	// so that the kernel has taken the lookup's reply (and made the
	// inode) before the pages arrive. A loaded machine may take longer:
	// a refused hand-over is tried again up to lookupTries times in all,
	// each wait twice the last, since no second lookup comes while the
	// kernel holds the inode.
	//
	// A guess at a time, because the kernel gives no sounder signal. Its
	// store (fuse_notify_store) finds the inode by node id and answers
	// ENOENT when there is none; the inode is made by the thread that
	// sent the LOOKUP, once the reply wakes it. So even a store made
	// after the reply's write returned may come first, and nothing tells
	// the daemon that the thread has run. The first sign that the inode
	// exists is the next request naming it, OPEN, and the job's read
	// follows it at once: too late to spare that read a round trip.
	lookupDelay = 2 * time.Millisecond
	lookupTries = 6
)

// pageCacheItem is a file to hand over, with its bytes when the fetch
// that just stored them passed them on (nil: read them from the cache).
type pageCacheItem struct {
	idx   uint32
	data  []byte
	after time.Time // not before: set for a lookup's hand-over
	tries int       // hand-overs of a lookup the kernel refused so far
}

// kernelCache takes a file's bytes into the kernel's page cache;
// *fusefs.Mount is one. It reports false when the kernel refused them.
type kernelCache interface {
	StoreCache(idx uint32, data []byte) bool
}

func newPageCache(log zerolog.Logger, c cacheContent, max int64) *pageCache {
	words := (c.snap.Len() + 63) / 64
	return &pageCache{c: c, max: max, log: log, fetched: make([]atomic.Uint64, words), pushed: make([]atomic.Uint64, words),
		queue: make(chan pageCacheItem, pageCacheQueue), stop: make(chan struct{})}
}

// start hands files over to m from now on.
func (p *pageCache) start(m kernelCache) {
	p.m = m
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case it := <-p.queue:
				p.pending.Add(-int64(len(it.data)))
				if d := time.Until(it.after); d > 0 {
					time.Sleep(d)
				}
				p.push(it)
			case <-p.stop:
				return
			}
		}
	}()
}

// close stops handing files over and waits for the push under way.
func (p *pageCache) close() {
	if p == nil || p.m == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.log.Info().Int64("files", p.files.Load()).Int64("bytes", p.bytes.Load()).Msg("small files handed to the kernel's page cache")
}

// copyOf keeps a copy of a fetched file's bytes for the hand-over, or
// nil when too much is held already or the file is too large.
func (p *pageCache) copyOf(b []byte) []byte {
	if p == nil || int64(len(b)) > p.max || p.pending.Load()+int64(len(b)) > pageCacheHeld {
		return nil
	}
	return append([]byte(nil), b...)
}

// fetchedWhole records that the prefetcher fetched idx whole, and hands it
// over if it is small; data, if not nil, is its bytes.
func (p *pageCache) fetchedWhole(idx uint32, data []byte) {
	if p == nil {
		return
	}
	if size := p.c.snap.Attr(idx).Size; size == 0 || size > p.max {
		return
	}
	p.fetched[idx/64].Or(1 << (idx % 64))
	p.enqueue(pageCacheItem{idx: idx, data: data})
}

// onLookup hands idx over if it was fetched whole: the kernel is about to
// hold its inode, and pages of an inode it dropped went with it.
func (p *pageCache) onLookup(idx uint32) {
	bit := uint64(1) << (idx % 64)
	if p.fetched[idx/64].Load()&bit != 0 && p.pushed[idx/64].Load()&bit == 0 {
		p.enqueue(pageCacheItem{idx: idx, after: time.Now().Add(lookupDelay)})
	}
}

// onForget makes idx's next lookup hand it over again: the kernel dropped
// its inode, and the pages with it.
func (p *pageCache) onForget(idx uint32) {
	p.pushed[idx/64].And(^(uint64(1) << (idx % 64)))
}

func (p *pageCache) enqueue(it pageCacheItem) {
	p.pending.Add(int64(len(it.data)))
	select {
	case p.queue <- it:
	default:
		p.pending.Add(-int64(len(it.data)))
	}
}

// push hands a file's bytes to the kernel: those the fetch passed on, or
// else read from the cache, checked; a file no longer whole in the cache
// is left alone (reading it would reach the source).
func (p *pageCache) push(it pageCacheItem) {
	if it.data != nil {
		p.store(it.idx, it.data)
		return
	}
	idx := it.idx
	size := p.c.snap.Attr(idx).Size
	h, err := p.c.cache.OpenFile(p.c.key(idx))
	if err != nil {
		return
	}
	defer h.Close()
	fd, ok := h.CachedFd(0, int(size))
	if !ok {
		return
	}
	buf := make([]byte, size)
	if n, err := preadFull(int(fd), buf); err != nil || n != len(buf) {
		return
	}
	if !p.store(idx, buf) && !it.after.IsZero() && it.tries+1 < lookupTries {
		it.tries++
		time.AfterFunc(lookupDelay<<it.tries, func() { p.enqueue(it) })
	}
}

func (p *pageCache) store(idx uint32, data []byte) bool {
	if !p.m.StoreCache(idx, data) {
		return false
	}
	p.pushed[idx/64].Or(1 << (idx % 64))
	p.files.Add(1)
	p.bytes.Add(int64(len(data)))
	return true
}

// preadFull reads len(buf) bytes at offset 0 of fd, or what there is.
func preadFull(fd int, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := unix.Pread(fd, buf[n:], int64(n))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return n, err
		case k == 0:
			return n, nil
		}
		n += k
	}
	return n, nil
}
