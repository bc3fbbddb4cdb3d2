package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// earlyOptions say how early and how widely content is fetched before
// the job asks for it.
type earlyOptions struct {
	warm        []string
	cpuProfile  string
	maxInFlight int
	minInFlight int
	noPageCache bool
}

func (e *earlyOptions) AddFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&e.warm, "warm", nil, "stage this subtree (relative to SOURCE; . for all of it) in the background from the moment the mount serves, smallest files first, behind the job's reads and within the cache budget; repeatable")
	f.IntVar(&e.maxInFlight, "max-in-flight", 64, "most background fetches in flight at the source; the daemon finds how many pay below this")
	f.IntVar(&e.minInFlight, "min-in-flight", 16, "background fetches in flight at the start, and at the least (lowered to --max-in-flight if above it)")
	f.StringVar(&e.cpuProfile, "cpuprofile", "", "development: write the daemon's CPU profile to this file until it exits")
	f.BoolVar(&e.noPageCache, "no-page-cache", false, "development: do not hand small prefetched files to the kernel's page cache (to measure what it gains)")
	for _, name := range []string{"cpuprofile", "no-page-cache"} {
		if err := f.MarkHidden(name); err != nil {
			panic(err)
		}
	}
}

// check validates the flags and parses --prefetch (off, or a comma list
// of dir and list) into what the daemon fetches early.
func (e *earlyOptions) check(prefetchFlag string) (daemon.Early, error) {
	out := daemon.Early{Warm: e.warm, CPUProfile: e.cpuProfile, NoPageCache: e.noPageCache}
	// A site that sets only --max-in-flight 8 means at most 8.
	e.minInFlight = min(e.minInFlight, e.maxInFlight)
	if e.maxInFlight < 1 || e.maxInFlight > 4096 || e.minInFlight < 1 {
		return out, fmt.Errorf("want 1 <= --min-in-flight (%d) <= --max-in-flight (%d) <= 4096", e.minInFlight, e.maxInFlight)
	}
	for _, w := range e.warm {
		if filepath.IsAbs(w) || slices.Contains(strings.Split(filepath.ToSlash(w), "/"), "..") {
			return out, fmt.Errorf("--warm %q: want a path relative to SOURCE", w)
		}
	}
	if prefetchFlag == "off" {
		return out, nil
	}
	for _, p := range strings.Split(prefetchFlag, ",") {
		switch strings.TrimSpace(p) {
		case "dir":
			out.OnOpen = true
		case "list":
			out.OnList = true
		default:
			return out, fmt.Errorf("--prefetch %q: want off, or dir, list or dir,list", prefetchFlag)
		}
	}
	return out, nil
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
