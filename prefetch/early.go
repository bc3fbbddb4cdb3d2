package prefetch

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cachefs/cachefs/snapshot"
)

// WarmStats is the progress of WarmTrees.
type WarmStats struct {
	Files      int64 `json:"files"`       // queued to warm
	TotalBytes int64 `json:"total_bytes"` // their size
	Done       int64 `json:"done"`        // fetched (or found stored)
	Bytes      int64 `json:"bytes"`       // fetched from the source for them
	Failed     int64 `json:"failed"`      // could not be fetched (see the log)
	// Listing is true until the trees have been gathered.
	Listing bool `json:"listing"`
	// Stopped: the cache had no room left without evicting what the job
	// read, so warming gave up.
	Stopped bool `json:"stopped"`
}

// ErrNotInSnapshot means a path to warm names nothing in the snapshot.
var ErrNotInSnapshot = fmt.Errorf("prefetch: not in the snapshot")

// Resolve returns the entry of rel, a slash-separated path relative to the
// snapshot's root ("" or "." for the root).
func Resolve(snap *snapshot.Snapshot, rel string) (uint32, error) {
	idx := uint32(0)
	for name := range strings.SplitSeq(strings.Trim(rel, "/"), "/") {
		if name == "" || name == "." {
			continue
		}
		next, ok := snap.Lookup(idx, name)
		if !ok {
			return 0, fmt.Errorf("%q: %w", rel, ErrNotInSnapshot)
		}
		idx = next
	}
	return idx, nil
}

// WarmTrees queues every regular file under roots (entries of the
// snapshot, files or directories), smallest first, behind everything else
// the prefetcher does: a job's own reads and the files it is about to read
// go before. Smallest first because on a shared filesystem a file costs an
// open and a read whatever its size: the many small files a job scans
// first are staged soonest, and the large ones, whose bandwidth the job's
// reads would share, last. Gathering the trees runs in the background, so
// a mount that asks for it serves at once.
func (p *Prefetcher) WarmTrees(roots []uint32) {
	p.mu.Lock()
	p.warm = &WarmStats{Listing: true}
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		files := p.gather(roots)
		slices.SortStableFunc(files, func(a, b uint32) int {
			sa, sb := p.snap.Attr(a).Size, p.snap.Attr(b).Size
			return int(min(max(sa-sb, -1), 1))
		})
		set := make([]uint64, (p.snap.Len()+63)/64)
		for _, f := range files {
			set[f/64] |= 1 << (f % 64)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.warm.Listing = false
		p.warmed = set
		for _, f := range files {
			p.warm.Files++
			p.warm.TotalBytes += p.snap.Attr(f).Size
			if !p.files[f] {
				p.files[f] = true
				p.warmQ = append(p.warmQ, f)
			}
		}
		p.cond.Broadcast()
	}()
}

// gather lists the non-empty regular files under roots, each once.
func (p *Prefetcher) gather(roots []uint32) []uint32 {
	var files []uint32
	seen := map[uint32]bool{}
	stack := append([]uint32(nil), roots...)
	for len(stack) > 0 && p.ctx.Err() == nil {
		idx := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[idx] {
			continue
		}
		seen[idx] = true
		a := p.snap.Attr(idx)
		switch {
		case a.IsDir():
			lo, hi := p.snap.Children(idx)
			for c := lo; c < hi; c++ {
				stack = append(stack, c)
			}
		case a.IsRegular() && a.Size > 0:
			files = append(files, idx)
		}
	}
	return files
}

// OnList queues the small files of a directory being listed, smallest
// first: a job that lists a directory is about to open what is in it,
// and a small file's cost is its latency, which fetching ahead hides.
// "Small" is up to Options.ListMaxBytes (a file fetched with one source
// read); DirBytes bounds one listing's bytes; a directory of fewer than
// ListMinEntries entries queues nothing. Each directory is queued once.
func (p *Prefetcher) OnList(dir uint32) {
	if p.opts.ListMaxBytes <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lists[dir] {
		return
	}
	p.lists[dir] = true
	lo, hi := p.snap.Children(dir)
	if int(hi-lo) < p.opts.ListMinEntries {
		return
	}
	var picked []uint32
	for c := lo; c < hi; c++ {
		a := p.snap.Attr(c)
		if !p.files[c] && a.IsRegular() && a.Size > 0 && a.Size <= p.opts.ListMaxBytes {
			picked = append(picked, c)
		}
	}
	slices.SortStableFunc(picked, func(a, b uint32) int {
		sa, sb := p.snap.Attr(a).Size, p.snap.Attr(b).Size
		return int(min(max(sa-sb, -1), 1))
	})
	var bytes int64
	for _, c := range picked {
		if bytes += p.snap.Attr(c).Size; bytes > p.opts.DirBytes {
			break
		}
		p.files[c] = true
		p.listed = append(p.listed, c)
	}
	p.cond.Broadcast()
}

// warmSet reports whether idx is one of the files WarmTrees stages; p.mu
// held.
func (p *Prefetcher) warmSet(idx uint32) bool {
	return int(idx/64) < len(p.warmed) && p.warmed[idx/64]&(1<<(idx%64)) != 0
}
