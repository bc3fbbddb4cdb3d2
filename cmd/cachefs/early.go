package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"

	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
)

// earlyOptions say how early and how widely content is fetched before
// the job asks for it.
type earlyOptions struct {
	warm        []string
	cpuProfile  string
	maxInFlight int
	minInFlight int
	// parsed from --prefetch
	onOpen, onList bool
}

// listMaxBytes is the largest file a listing queues: one that costs a
// single source read, whose fetch time is all latency.
func (e *earlyOptions) listMaxBytes(blockSize int64) int64 {
	if !e.onList {
		return 0
	}
	return blockSize
}

func (e *earlyOptions) AddFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&e.warm, "warm", nil, "stage this subtree (relative to SOURCE; . for all of it) in the background from the moment the mount serves, smallest files first, behind the job's reads and within the cache budget; repeatable")
	f.IntVar(&e.maxInFlight, "max-in-flight", 64, "most background fetches in flight at the source; the daemon finds how many pay below this")
	f.IntVar(&e.minInFlight, "min-in-flight", 16, "background fetches in flight at the start, and at the least (lowered to --max-in-flight if above it)")
	f.StringVar(&e.cpuProfile, "cpuprofile", "", "development: write the daemon's CPU profile to this file until it exits")
	_ = f.MarkHidden("cpuprofile")
}

func (e *earlyOptions) args() []string {
	a := []string{"--max-in-flight=" + strconv.Itoa(e.maxInFlight), "--min-in-flight=" + strconv.Itoa(e.minInFlight)}
	for _, w := range e.warm {
		a = append(a, "--warm="+w)
	}
	if e.cpuProfile != "" {
		a = append(a, "--cpuprofile="+e.cpuProfile)
	}
	return a
}

// check validates the flags, parsing --prefetch (off, or a comma list of
// dir and list).
func (e *earlyOptions) check(prefetchFlag string) error {
	// A site that sets only --max-in-flight 8 means at most 8.
	e.minInFlight = min(e.minInFlight, e.maxInFlight)
	if e.maxInFlight < 1 || e.maxInFlight > 4096 || e.minInFlight < 1 {
		return fmt.Errorf("want 1 <= --min-in-flight (%d) <= --max-in-flight (%d) <= 4096", e.minInFlight, e.maxInFlight)
	}
	for _, w := range e.warm {
		if filepath.IsAbs(w) || slices.Contains(strings.Split(filepath.ToSlash(w), "/"), "..") {
			return fmt.Errorf("--warm %q: want a path relative to SOURCE", w)
		}
	}
	e.onOpen, e.onList = false, false
	if prefetchFlag == "off" {
		return nil
	}
	for _, p := range strings.Split(prefetchFlag, ",") {
		switch strings.TrimSpace(p) {
		case "dir":
			e.onOpen = true
		case "list":
			e.onList = true
		default:
			return fmt.Errorf("--prefetch %q: want off, or dir, list or dir,list", prefetchFlag)
		}
	}
	return nil
}

// resolveWarm finds the --warm paths in the snapshot, so a typo fails the
// mount instead of warming nothing.
func (e *earlyOptions) resolveWarm(snap *snapshot.Snapshot) ([]uint32, error) {
	var roots []uint32
	for _, w := range e.warm {
		idx, err := prefetch.Resolve(snap, filepath.ToSlash(filepath.Clean(w)))
		if err != nil {
			return nil, fmt.Errorf("--warm: %w", err)
		}
		roots = append(roots, idx)
	}
	return roots, nil
}

// startPrefetch makes the prefetcher the flags ask for (nil if none) and
// starts warming; onOpen and onList are its hooks for the file system.
func startPrefetch(log zerolog.Logger, o *mountOptions, snap *snapshot.Snapshot, w prefetch.Warmer, blockSize int64) (pf *prefetch.Prefetcher, onOpen, onList func(uint32), err error) {
	e := &o.early
	roots, err := e.resolveWarm(snap)
	if err != nil {
		return nil, nil, nil, err
	}
	if !e.onOpen && !e.onList && len(roots) == 0 {
		return nil, nil, nil, nil
	}
	pf = prefetch.New(snap, w, prefetch.Options{
		Workers: o.pfWorkers, MaxInFlight: e.maxInFlight, MinInFlight: e.minInFlight,
		BlockSize: blockSize, ListMaxBytes: e.listMaxBytes(blockSize),
		PerDir: o.pfFiles, DirBytes: o.pfDirBytes,
		Logger: log.With().Str("component", "prefetch").Logger()})
	if e.onOpen {
		onOpen = pf.OnOpen
	}
	if e.onList {
		onList = pf.OnList
	}
	if len(roots) > 0 {
		pf.WarmTrees(roots)
	}
	return pf, onOpen, onList, nil
}

// blockBytes is --block-size in bytes; openCache has checked it.
func (o *mountOptions) blockBytes() int64 {
	bs, _ := humanize.ParseBytes(o.blockSize)
	return int64(bs)
}

// warmLine is the progress of --warm as status shows it.
func warmLine(w *prefetch.WarmStats) string {
	state := ""
	switch {
	case w.Listing:
		return "gathering the files to stage"
	case w.Stopped:
		state = "; stopped: no room in the cache without evicting what the job read"
	case w.Done+w.Failed >= w.Files:
		state = "; done"
	}
	return fmt.Sprintf("%s of %s files staged (%s fetched of %s)%s", humanize.Comma(w.Done), humanize.Comma(w.Files),
		humanize.IBytes(uint64(w.Bytes)), humanize.IBytes(uint64(w.TotalBytes)), state)
}

// startCPUProfile profiles the daemon for development (go tool pprof);
// the returned func stops and writes it.
func (e *earlyOptions) startCPUProfile(log zerolog.Logger) func() {
	if e.cpuProfile == "" {
		return func() {}
	}
	f, err := os.Create(e.cpuProfile)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warn().Err(err).Msg("no CPU profile")
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
