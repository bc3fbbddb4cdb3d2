package daemon

import (
	"fmt"
	"path/filepath"
	"runtime/pprof"

	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/privdir"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// Early says how early and how widely content is fetched before the job
// asks for it; Config.Prefetch bounds how.
type Early struct {
	OnOpen bool // on open, queue the rest of the file's directory
	OnList bool // on listing, queue the directory's small files
	// Warm are subtrees (relative to Source, "." for all of it) staged in
	// the background from the moment the mount serves.
	Warm []string
	// CPUProfile, if set, is where the daemon writes its CPU profile
	// until it exits; for development.
	CPUProfile string
	// NoPageCache keeps prefetched small files out of the kernel's page
	// cache until the job reads them; for development, to measure what
	// handing them over gains.
	NoPageCache bool
}

// resolveWarm finds the Warm paths in the snapshot, so a typo fails the
// mount instead of warming nothing.
func (e *Early) resolveWarm(snap *snapshot.Snapshot) ([]uint32, error) {
	var roots []uint32
	for _, w := range e.Warm {
		idx, err := prefetch.Resolve(snap, filepath.ToSlash(filepath.Clean(w)))
		if err != nil {
			return nil, fail(ErrUsage, fmt.Errorf("--warm: %w", err))
		}
		roots = append(roots, idx)
	}
	return roots, nil
}

// startPrefetch makes the prefetcher c asks for (nil if none) and starts
// warming; onOpen and onList are its hooks for the file system.
func (c *Config) startPrefetch(log zerolog.Logger, snap *snapshot.Snapshot, w prefetch.Warmer) (pf *prefetch.Prefetcher, onOpen, onList func(uint32), err error) {
	e := &c.Early
	roots, err := e.resolveWarm(snap)
	if err != nil {
		return nil, nil, nil, err
	}
	if !e.OnOpen && !e.OnList && len(roots) == 0 {
		return nil, nil, nil, nil
	}
	opts := c.Prefetch
	opts.BlockSize = c.BlockSize
	if e.OnList {
		// A listing queues only files that cost a single source read,
		// whose fetch time is all latency.
		opts.ListMaxBytes = c.BlockSize
	}
	opts.Logger = log.With().Str("component", "prefetch").Logger()
	pf = prefetch.New(snap, w, opts)
	if e.OnOpen {
		onOpen = pf.OnOpen
	}
	if e.OnList {
		onList = pf.OnList
	}
	if len(roots) > 0 {
		pf.WarmTrees(roots)
	}
	return pf, onOpen, onList, nil
}

// startCPUProfile profiles the daemon for development (go tool pprof);
// the returned func stops and writes it. The file is opened as the log is
// (never through a symlink, an existing one only if ours with one link),
// then emptied: the path may be in /tmp, where another user could have
// put a link to a file of root's there first.
func (e *Early) startCPUProfile(log zerolog.Logger) func() {
	if e.CPUProfile == "" {
		return func() {}
	}
	f, err := privdir.OpenAppend(e.CPUProfile)
	if err == nil {
		if err = f.Truncate(0); err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			_ = f.Close() // the error above is the one to report
		}
	}
	if err != nil {
		log.Warn().Err(err).Msg("no CPU profile")
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			log.Warn().Err(err).Msg("writing the CPU profile")
		}
	}
}
