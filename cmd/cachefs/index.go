package main

import (
	"fmt"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// indexOptions choose where a mount's snapshot comes from: a walk of the
// source, or a snapshot index file written earlier.
type indexOptions struct {
	path     pathFlag   // --index: load instead of walking
	maxAge   daemon.Age // --max-index-age: 0 means no limit
	savePath pathFlag   // --save-index: also write the walk's index here
	reuse    bool       // --reuse-index: keep one in the cache dir, reuse it while the root is unchanged
}

func (o *indexOptions) AddFlags(f *pflag.FlagSet) {
	f.Var(&o.path, "index", "load the snapshot from this index file (from 'cachefs snapshot' or --save-index) instead of walking SOURCE")
	f.Var(&o.maxAge, "max-index-age", "refuse an --index whose walk is older than this (90m, 12h, 7d); a kept --reuse-index this old is re-walked (default: no limit)")
	f.Var(&o.savePath, "save-index", "after walking SOURCE, also write the snapshot to this index file, e.g. on shared storage for other nodes; the walk then records POSIX ACLs, as 'cachefs snapshot' does, so that the index can serve --allow-other mounts")
	f.BoolVar(&o.reuse, "reuse-index", false, "keep an index in the cache directory and load it instead of walking while SOURCE's root keeps its inode, device, mtime and ctime")
}

// config types the options, paths made absolute; the daemon checks that
// they go together.
func (o *indexOptions) config() daemon.IndexConfig {
	c := daemon.IndexConfig{MaxAge: time.Duration(o.maxAge), Reuse: o.reuse}
	if o.path != "" {
		c.Path = o.path.abs()
	}
	if o.savePath != "" {
		c.SavePath = o.savePath.abs()
	}
	return c
}

// indexSummary is the size of an index for summary lines.
func indexSummary(info snapshot.IndexInfo) string {
	per := 0.0
	if info.Stats.Entries > 0 {
		per = float64(info.Size) / float64(info.Stats.Entries)
	}
	return fmt.Sprintf("%s, %.0f B/entry", humanize.IBytes(uint64(info.Size)), per)
}
