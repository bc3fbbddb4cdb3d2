package daemon

import (
	"sync"
	"sync/atomic"

	cfs "github.com/cachefs/cachefs/fusefs"
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
	m   *cfs.Mount
	// fetched marks the files the prefetcher fetched whole; 1 bit each.
	fetched []atomic.Uint64
	queue   chan uint32
	stop    chan struct{}
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
	pageCacheMax   = 1 << 20
)

func newPageCache(c cacheContent, max int64) *pageCache {
	return &pageCache{c: c, max: max, fetched: make([]atomic.Uint64, (c.snap.Len()+63)/64),
		queue: make(chan uint32, pageCacheQueue), stop: make(chan struct{})}
}

// start hands files over to m from now on.
func (p *pageCache) start(m *cfs.Mount) {
	p.m = m
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case idx := <-p.queue:
				p.push(idx)
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
}

// fetchedWhole records that the prefetcher fetched idx whole, and hands it
// over if it is small.
func (p *pageCache) fetchedWhole(idx uint32) {
	if p == nil {
		return
	}
	if size := p.c.snap.Attr(idx).Size; size == 0 || size > p.max {
		return
	}
	p.fetched[idx/64].Or(1 << (idx % 64))
	p.enqueue(idx)
}

// onLookup hands idx over if it was fetched whole: the kernel is about to
// hold its inode, and pages of an inode it dropped went with it.
func (p *pageCache) onLookup(idx uint32) {
	if p.fetched[idx/64].Load()&(1<<(idx%64)) != 0 {
		p.enqueue(idx)
	}
}

func (p *pageCache) enqueue(idx uint32) {
	select {
	case p.queue <- idx:
	default:
	}
}

// push reads idx's bytes from the cache, checked, and hands them to the
// kernel; a file no longer whole in the cache is left alone (reading it
// would reach the source).
func (p *pageCache) push(idx uint32) {
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
	if p.m.StoreCache(idx, buf) {
		p.files.Add(1)
		p.bytes.Add(size)
	}
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
