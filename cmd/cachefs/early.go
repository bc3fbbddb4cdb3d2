package main

import (
	"github.com/cachefs/cachefs/daemon"
	"github.com/spf13/pflag"
)

// earlyOptions say how early and how widely content is fetched before
// the job asks for it.
type earlyOptions struct{ daemon.EarlySettings }

func (e *earlyOptions) AddFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&e.Warm, "warm", nil, "stage this subtree (relative to SOURCE; . for all of it) in the background from the moment the mount serves, smallest files first, behind the job's reads and within the cache budget; repeatable")
	f.IntVar(&e.MaxInFlight, "max-in-flight", 64, "most background fetches in flight at the source; the daemon finds how many pay below this")
	f.IntVar(&e.MinInFlight, "min-in-flight", 16, "background fetches in flight at the start, and at the least (lowered to --max-in-flight if above it)")
	f.StringVar(&e.Prefetch, "prefetch", "dir,list", "fetch ahead in the background: dir (on open, the directory's other files), list (on listing a large directory, its small files), both (dir,list) or off")
	f.IntVar(&e.ListMin, "prefetch-list-min", 256, "entries a listed directory needs for list to prefetch its files (0: any)")
	f.IntVar(&e.Workers, "prefetch-workers", 0, "files prefetched at once, fixed (0: as many as pay, up to --max-in-flight)")
	f.IntVar(&e.DirFiles, "prefetch-dir-files", 256, "most files queued per directory at a time")
	f.StringVar(&e.DirBytes, "prefetch-dir-bytes", "1GiB", "most bytes queued per directory at a time")
	f.StringVar(&e.CPUProfile, "cpuprofile", "", "development: write the daemon's CPU profile to this file until it exits")
	f.BoolVar(&e.NoPageCache, "no-page-cache", false, "development: do not hand small prefetched files to the kernel's page cache (to measure what it gains)")
	for _, name := range []string{"cpuprofile", "no-page-cache"} {
		if err := f.MarkHidden(name); err != nil {
			panic(err)
		}
	}
}
