// Package prefetch warms the block cache ahead of a dataloader: when a file
// is opened, the other regular files of its directory are queued for
// background fetching, nearest names first.
//
// # Invariants
//
//   - Each file is queued at most once per mount (a busy one is put back,
//     not queued anew).
//   - Each directory has at most Options.PerDir files (and DirBytes bytes
//     per top-up) queued at a time; a huge directory is prefetched in step
//     with the job's opens and cannot flood the source or the cache.
//   - Work runs on Options.Workers goroutines at background priority: the
//     Warmer holds back while demand reads wait, and refuses to evict data
//     the job used recently; on such a refusal the whole queue is dropped
//     and prefetching stops until the next open finds room again. A file
//     the Warmer holds back (ErrBusy) goes to the back of the queue, so a
//     large file never keeps a worker from the small ones behind it.
//   - Nothing here touches the source's metadata: listings come from the
//     snapshot.
package prefetch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// Warmer fetches a whole file into the cache at background priority. It
// returns an error wrapping ErrNoRoom when storing would evict recently used
// data.
type Warmer interface {
	Warm(ctx context.Context, idx uint32) (int64, error)
}

// ErrNoRoom is what a Warmer wraps when the cache has no room to spare.
var ErrNoRoom = errors.New("no room in the cache")

// ErrBusy is what a Warmer wraps when a file has to wait for the job's own
// reads to finish (a large fetch would take bandwidth they need). The
// prefetcher then moves on to the files queued behind it and comes back to
// it, so one large file does not hold a worker while small ones could be
// fetched.
var ErrBusy = errors.New("held back by demand reads")

// busyPause is how long a worker rests when every queued file was just
// found busy, so that a queue of large files does not spin.
const busyPause = 2 * time.Millisecond

// Options bound the prefetcher.
type Options struct {
	Workers  int   // default 16
	PerDir   int   // files kept queued ahead of the reader per directory; default 256
	DirBytes int64 // bytes queued per directory and top-up; default 1 GiB
	Logger   zerolog.Logger
}

// Stats are the prefetcher's counters.
type Stats struct {
	Queued  int   `json:"queued"`  // files waiting
	Running int   `json:"running"` // files being fetched now
	Done    int64 `json:"done"`    // files fetched
	Bytes   int64 `json:"bytes"`   // bytes fetched from the source
	Stopped int64 `json:"stopped"` // times the queue was dropped for want of room
}

// Prefetcher queues directories' files on open and warms them.
type Prefetcher struct {
	opts Options
	snap *snapshot.Snapshot
	w    Warmer
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []uint32
	dirs    map[uint32]*dirWindow
	files   map[uint32]bool
	running int
	// busyRun counts busy answers since the last fetch that got anywhere.
	busyRun int
	done    int64
	bytes   int64
	stopped int64
}

// New starts the workers; Close stops them.
func New(snap *snapshot.Snapshot, w Warmer, opts Options) *Prefetcher {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.PerDir <= 0 {
		opts.PerDir = 256
	}
	if opts.DirBytes <= 0 {
		opts.DirBytes = 1 << 30
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prefetcher{opts: opts, snap: snap, w: w, ctx: ctx, stop: cancel,
		dirs: map[uint32]*dirWindow{}, files: map[uint32]bool{}}
	p.cond = sync.NewCond(&p.mu)
	for i := 0; i < opts.Workers; i++ {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

// Close drops the queue and waits for running fetches to end.
func (p *Prefetcher) Close() {
	p.stop()
	p.mu.Lock()
	p.queue = nil
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// Stats returns the counters.
func (p *Prefetcher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Queued: len(p.queue), Running: p.running, Done: p.done, Bytes: p.bytes, Stopped: p.stopped}
}

// dirWindow is how far prefetch has got in one directory.
type dirWindow struct {
	start   uint32 // first child considered: the one after the first open
	cursor  uint32 // next child to consider; wraps to the first child once
	wrapped bool
	done    bool // every child considered
	pending int  // queued and not yet taken by a worker
}

// OnOpen keeps the opened file's directory prefetched ahead of the job:
// starting after the first file opened there, in name order, wrapping
// round to the files before it, with at most PerDir files and DirBytes
// bytes queued for the directory at a time. Each open tops the queue up
// once it is half empty, so prefetch moves in step with the job, whether
// the job reads the directory in order or shuffled.
func (p *Prefetcher) OnOpen(idx uint32) {
	dir := p.snap.Parent(idx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files[idx] = true
	w := p.dirs[dir]
	if w == nil {
		w = &dirWindow{start: idx + 1, cursor: idx + 1}
		p.dirs[dir] = w
	}
	if w.done || w.pending > p.opts.PerDir/2 {
		return
	}
	lo, hi := p.snap.Children(dir)
	var bytes int64
	for w.pending < p.opts.PerDir {
		if !w.wrapped && w.cursor >= hi {
			w.cursor, w.wrapped = lo, true
		}
		if w.wrapped && w.cursor >= min(w.start, hi) {
			w.done = true
			break
		}
		c := w.cursor
		a := p.snap.Attr(c)
		if !p.files[c] && a.IsRegular() && a.Size > 0 {
			if bytes+a.Size > p.opts.DirBytes {
				break
			}
			p.files[c] = true
			p.queue = append(p.queue, c)
			w.pending++
			bytes += a.Size
		}
		w.cursor++
	}
	p.cond.Broadcast()
}

func (p *Prefetcher) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && p.ctx.Err() == nil {
			p.cond.Wait()
		}
		if p.ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		idx := p.queue[0]
		p.queue = p.queue[1:]
		if w := p.dirs[p.snap.Parent(idx)]; w != nil {
			w.pending--
		}
		p.running++
		p.mu.Unlock()

		n, err := p.w.Warm(p.ctx, idx)

		p.mu.Lock()
		p.running--
		p.bytes += n
		if n > 0 || !errors.Is(err, ErrBusy) {
			p.busyRun = 0
		}
		switch {
		case errors.Is(err, ErrBusy) && p.ctx.Err() == nil:
			// To the back of the queue; still queued as far as the
			// directory's window is concerned.
			p.queue = append(p.queue, idx)
			if w := p.dirs[p.snap.Parent(idx)]; w != nil {
				w.pending++
			}
			p.busyRun++
			rest := p.busyRun > len(p.queue)
			p.mu.Unlock()
			if rest {
				select {
				case <-p.ctx.Done():
				case <-time.After(busyPause):
				}
			}
			continue
		case err == nil:
			p.done++
		case errors.Is(err, ErrNoRoom):
			if len(p.queue) > 0 {
				p.opts.Logger.Info().Int("dropped", len(p.queue)).Msg("prefetch stopped: the cache has no room without evicting recently read data")
			}
			p.stopped++
			// Forget what was queued so a later open may try again once
			// room has been made; the Warmer checks for room before it
			// reads anything, so a retry costs the source nothing.
			p.queue = nil
			p.dirs = map[uint32]*dirWindow{}
			p.files = map[uint32]bool{}
		case p.ctx.Err() == nil:
			p.opts.Logger.Debug().Err(err).Str("path", p.snap.Path(idx)).Msg("prefetch failed")
		}
		p.mu.Unlock()
	}
}
