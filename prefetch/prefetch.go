// Package prefetch warms the block cache ahead of a dataloader, from three
// sources of knowledge, taken in this order: when a file is opened, the
// other regular files of its directory (nearest names first); when a
// directory is listed, its small files (smallest first); and the subtrees
// named with mount --warm (WarmTrees, smallest first).
//
// # Invariants
//
//   - Each file is queued at most once while the queue lasts (a busy one
//     is put back, not queued anew); a budget stop drops the queue and
//     that memory, so a later open may queue the files again.
//   - Each directory has at most Options.PerDir files (and DirBytes bytes
//     per top-up) queued at a time on open; a huge directory is prefetched
//     in step with the job's opens and cannot flood the source or the
//     cache. A listing queues at most DirBytes of files of at most
//     ListMaxBytes each.
//   - At most Options.MaxInFlight files are fetched at once; below that a
//     Controller chooses how many from the latency the source shows (more
//     while it stays flat, fewer once the source queues).
//   - Work runs at background priority: the Warmer holds back while demand
//     reads wait, and refuses to evict data the job used recently; on such
//     a refusal every queue is dropped and prefetching stops until the
//     next open finds room again. A file the Warmer holds back (ErrBusy)
//     goes to a queue of its own, taken one time in eight or when nothing
//     else waits, so a large file never keeps the small ones waiting.
//   - Nothing here touches the source's metadata: listings come from the
//     snapshot.
package prefetch

import (
	"bytes"
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
	// Workers, when set, fixes the files fetched at once, overriding
	// MaxInFlight and MinInFlight.
	Workers int
	// MaxInFlight caps the files fetched at once (default 64); the
	// Controller chooses how many below it, starting at MinInFlight
	// (default 4). Equal values fix the number.
	MaxInFlight int
	MinInFlight int
	// BlockSize is the cache's block size, to turn a fetch's time into a
	// latency per source request; default 1 MiB.
	BlockSize int64
	// ListMaxBytes is the largest file queued when its directory is
	// listed (OnList); 0 turns listing prefetch off.
	ListMaxBytes int64
	// ListMinEntries is how many entries a listed directory needs for its
	// files to be queued (0: any). A listing of hundreds of entries is a
	// dataset being enumerated by a job about to read it; a short one is
	// more often a search, such as an interpreter's look through its
	// import path, whose files mostly stay unread.
	ListMinEntries int
	PerDir         int   // files kept queued ahead of the reader per directory; default 256
	DirBytes       int64 // bytes queued per directory and top-up; default 1 GiB
	Logger         zerolog.Logger
}

// Stats are the prefetcher's counters.
type Stats struct {
	Queued  int   `json:"queued"`  // files waiting
	Running int   `json:"running"` // files being fetched now
	Done    int64 `json:"done"`    // files fetched
	Bytes   int64 `json:"bytes"`   // bytes fetched from the source
	Stopped int64 `json:"stopped"` // times the queue was dropped for want of room
	// InFlight is the Controller's limit now; MaxInFlight its cap.
	InFlight    int `json:"in_flight_limit"`
	MaxInFlight int `json:"max_in_flight"`
	// Warm is the progress of WarmTrees, nil if it was not asked for.
	Warm *WarmStats `json:"warm,omitempty"`
}

// Prefetcher queues directories' files on open and warms them.
type Prefetcher struct {
	opts Options
	snap *snapshot.Snapshot
	w    Warmer
	ctrl *Controller
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu   sync.Mutex
	cond *sync.Cond
	// Three queues, taken in this order: the rest of an opened file's
	// directory, the small files of listed directories, the trees to warm.
	queue  []uint32
	listed []uint32
	warmQ  []uint32
	// busy holds files a Warmer held back (ErrBusy): retried when the
	// other queues are empty, and every busyEvery takes, so that one
	// large file waiting for bandwidth never holds up the small ones.
	busy    []uint32
	takes   int
	warm    *WarmStats
	warmed  []uint64        // bitmap of the files WarmTrees stages
	lists   map[uint32]bool // directories whose listing was queued
	dirs    map[windowKey]*dirWindow
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
	if opts.Workers > 0 {
		opts.MaxInFlight, opts.MinInFlight = opts.Workers, opts.Workers
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 64
	}
	if opts.MinInFlight <= 0 {
		opts.MinInFlight = 4
	}
	if opts.BlockSize <= 0 {
		opts.BlockSize = 1 << 20
	}
	if opts.PerDir <= 0 {
		opts.PerDir = 256
	}
	if opts.DirBytes <= 0 {
		opts.DirBytes = 1 << 30
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Prefetcher{opts: opts, snap: snap, w: w, ctx: ctx, stop: cancel,
		ctrl: NewController(opts.MinInFlight, opts.MaxInFlight),
		dirs: map[windowKey]*dirWindow{}, files: map[uint32]bool{}, lists: map[uint32]bool{}}
	p.cond = sync.NewCond(&p.mu)
	for i := 0; i < opts.MaxInFlight; i++ {
		p.wg.Add(1)
		go p.work()
	}
	return p
}

// Close drops the queue and waits for running fetches to end.
func (p *Prefetcher) Close() {
	p.stop()
	p.mu.Lock()
	p.queue, p.listed, p.warmQ, p.busy = nil, nil, nil, nil
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

// Stats returns the counters.
func (p *Prefetcher) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{Queued: p.waiting(), Running: p.running, Done: p.done,
		Bytes: p.bytes, Stopped: p.stopped, InFlight: p.ctrl.Limit(), MaxInFlight: p.opts.MaxInFlight}
	if p.warm != nil {
		w := *p.warm
		st.Warm = &w
	}
	return st
}

// windowKey names a directory window: the files of dir whose names end in
// ext (from the last dot on; "" for a name with no extension).
type windowKey struct {
	dir uint32
	ext string
}

// extOf is the extension of idx's name, its bytes in the snapshot's arena.
func (p *Prefetcher) extOf(idx uint32) []byte {
	name := p.snap.NameBytes(idx)
	if i := bytes.LastIndexByte(name, '.'); i > 0 {
		return name[i:]
	}
	return nil
}

func (p *Prefetcher) windowOf(idx uint32) windowKey {
	return windowKey{dir: p.snap.Parent(idx), ext: string(p.extOf(idx))}
}

// dirWindow is how far prefetch has got in one directory's files of one
// extension.
type dirWindow struct {
	start   uint32 // first child considered: the one after the first open
	cursor  uint32 // next child to consider; wraps to the first child once
	wrapped bool
	done    bool // every child considered
	pending int  // queued and not yet taken by a worker
}

// OnOpen keeps the opened file's kind (its directory's files of the same
// extension) prefetched ahead of the job: starting after the first file
// of the kind opened there, in name order, wrapping round to the files
// before it, with at most PerDir files and DirBytes bytes queued for the
// window at a time. Each open tops the queue up once it is half empty, so
// prefetch moves in step with the job, whether the job reads the
// directory in order or shuffled.
func (p *Prefetcher) OnOpen(idx uint32) {
	key := p.windowOf(idx)
	dir := key.dir
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files[idx] = true
	w := p.dirs[key]
	if w == nil {
		w = &dirWindow{start: idx + 1, cursor: idx + 1}
		p.dirs[key] = w
	}
	if w.done || w.pending > p.opts.PerDir/2 {
		return
	}
	lo, hi := p.snap.Children(dir)
	var queued int64
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
		if !p.files[c] && a.IsRegular() && a.Size > 0 && string(p.extOf(c)) == key.ext {
			if queued+a.Size > p.opts.DirBytes {
				break
			}
			p.files[c] = true
			p.queue = append(p.queue, c)
			w.pending++
			queued += a.Size
		}
		w.cursor++
	}
	p.cond.Broadcast()
}

func (p *Prefetcher) work() {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		for (p.waiting() == 0 || p.running >= p.ctrl.Limit()) && p.ctx.Err() == nil {
			p.cond.Wait()
		}
		if p.ctx.Err() != nil {
			p.mu.Unlock()
			return
		}
		idx := p.takeLocked()
		p.running++
		p.mu.Unlock()

		t0 := time.Now()
		n, err := p.w.Warm(p.ctx, idx)
		if n > 0 {
			// One request per block fetched; a file found stored
			// costs the source nothing and says nothing of it.
			reqs := (n + p.opts.BlockSize - 1) / p.opts.BlockSize
			p.ctrl.Sample(time.Since(t0) / time.Duration(reqs))
		}

		p.mu.Lock()
		p.running--
		p.bytes += n
		p.cond.Broadcast() // a slot is free, and the limit may have moved
		p.finishLocked(idx, n, err)
	}
}

// waiting counts queued files; p.mu held.
func (p *Prefetcher) waiting() int {
	return len(p.queue) + len(p.listed) + len(p.warmQ) + len(p.busy)
}

// busyEvery: one take in this many goes to a held-back file.
const busyEvery = 8

// takeLocked pops the next file: an opened file's directory first, then
// listings, then warming, with held-back files in between; p.mu held, a
// queue not empty.
func (p *Prefetcher) takeLocked() uint32 {
	var idx uint32
	p.takes++
	switch {
	case len(p.busy) > 0 && (p.takes%busyEvery == 0 || len(p.busy) == p.waiting()):
		idx, p.busy = p.busy[0], p.busy[1:]
		return idx
	case len(p.queue) > 0:
		idx, p.queue = p.queue[0], p.queue[1:]
		if w := p.dirs[p.windowOf(idx)]; w != nil {
			w.pending--
		}
		return idx
	case len(p.listed) > 0:
		idx, p.listed = p.listed[0], p.listed[1:]
		return idx
	}
	idx, p.warmQ = p.warmQ[0], p.warmQ[1:]
	return idx
}

// finishLocked accounts for one fetch and unlocks p.mu.
func (p *Prefetcher) finishLocked(idx uint32, n int64, err error) {
	if n > 0 || !errors.Is(err, ErrBusy) {
		p.busyRun = 0
	}
	if p.warm != nil && p.warmSet(idx) {
		p.warm.Bytes += n
	}
	if p.warm != nil && !errors.Is(err, ErrBusy) && p.warmSet(idx) {
		if err == nil {
			p.warm.Done++
		} else if !errors.Is(err, ErrNoRoom) {
			p.warm.Failed++
		}
	}
	switch {
	case errors.Is(err, ErrBusy) && p.ctx.Err() == nil:
		p.busy = append(p.busy, idx)
		p.busyRun++
		rest := p.busyRun > len(p.busy) && len(p.busy) == p.waiting()
		p.mu.Unlock()
		if rest {
			select {
			case <-p.ctx.Done():
			case <-time.After(busyPause):
			}
		}
		return
	case err == nil:
		p.done++
	case errors.Is(err, ErrNoRoom):
		if k := p.waiting(); k > 0 {
			p.opts.Logger.Info().Int("dropped", k).Msg("prefetch stopped: the cache has no room without evicting recently read data")
		}
		p.stopped++
		if w := p.warm; w != nil && !w.Listing && w.Done+w.Failed < w.Files {
			w.Stopped = true
		}
		// Forget what was queued so a later open may try again once
		// room has been made; the Warmer checks for room before it
		// reads anything, so a retry costs the source nothing.
		p.queue, p.listed, p.warmQ, p.busy = nil, nil, nil, nil
		p.dirs = map[windowKey]*dirWindow{}
		p.files = map[uint32]bool{}
		p.lists = map[uint32]bool{}
	case p.ctx.Err() == nil:
		p.opts.Logger.Debug().Err(err).Str("path", p.snap.Path(idx)).Msg("prefetch failed")
	}
	p.mu.Unlock()
}
