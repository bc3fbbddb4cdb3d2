package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// keptIndexName is the index --reuse-index keeps in the cache directory.
const keptIndexName = "snapshot.index"

// indexOptions choose where a mount's snapshot comes from: a walk of the
// source, or a snapshot index file written earlier.
type indexOptions struct {
	path     string      // --index: load instead of walking
	maxAge   ageDuration // --max-index-age: 0 means no limit
	savePath string      // --save-index: also write the walk's index here
	reuse    bool        // --reuse-index: keep one in the cache dir, reuse it while the root is unchanged
}

func (o *indexOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.path, "index", "", "load the snapshot from this index file (from 'cachefs snapshot' or --save-index) instead of walking SOURCE")
	f.Var(&o.maxAge, "max-index-age", "refuse an --index whose walk is older than this (90m, 12h, 7d); a kept --reuse-index this old is re-walked (default: no limit)")
	f.StringVar(&o.savePath, "save-index", "", "after walking SOURCE, also write the snapshot to this index file, e.g. on shared storage for other nodes; the walk then records POSIX ACLs, as 'cachefs snapshot' does, so that the index can serve --allow-other mounts")
	f.BoolVar(&o.reuse, "reuse-index", false, "keep an index in the cache directory and load it instead of walking while SOURCE's root keeps its inode, device, mtime and ctime")
}

// args forwards the options from the launcher to the daemon, whose working
// directory is "/": paths go absolute.
func (o *indexOptions) args() []string {
	var a []string
	if o.path != "" {
		a = append(a, "--index="+absPath(o.path))
	}
	if o.maxAge > 0 {
		a = append(a, "--max-index-age="+o.maxAge.String())
	}
	if o.savePath != "" {
		a = append(a, "--save-index="+absPath(o.savePath))
	}
	if o.reuse {
		a = append(a, "--reuse-index=true")
	}
	return a
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// snapshot walks src, or loads the snapshot from an index. Errors carry exit
// codes: exitIndex for anything about an index, exitUsage for flags that do
// not go together; walk errors are left to the caller. A shared mount
// (--allow-other) needs a snapshot with ACLs; a walk for --save-index
// records them whatever the mount, since an index is made once for many
// mounts.
func (o *indexOptions) snapshot(ctx context.Context, log zerolog.Logger, src, cacheDir string, root *unix.Stat_t, shared bool, wo snapshot.WalkOptions) (*snapshot.Snapshot, error) {
	if o.path != "" && o.reuse {
		return nil, usageError(errors.New("--index and --reuse-index exclude each other: --index names the index to load"))
	}
	if o.path != "" && o.savePath != "" {
		return nil, usageError(errors.New("--save-index writes the index of a walk, and --index skips the walk; to copy an index, copy the file"))
	}
	if o.path != "" {
		return o.load(log, src, root, shared)
	}
	kept := filepath.Join(cacheDir, keptIndexName)
	if o.reuse {
		if s, info, ok := o.reuseKept(log, src, kept, root, shared || o.savePath != ""); ok {
			if o.savePath != "" {
				if err := saveIndex(log, o.savePath, s, info); err != nil {
					return nil, err
				}
			}
			return s, nil
		}
	}

	start := time.Now()
	rootDev := root.Dev
	wo.ACLs = wo.ACLs || o.savePath != ""
	s, err := snapshot.Walk(ctx, src, wo)
	if err != nil {
		return nil, err
	}
	info := snapshot.IndexInfo{Source: src, Host: hostname(), WalkStart: start, WalkDuration: time.Since(start), RootDev: rootDev}
	if o.savePath != "" {
		if err := saveIndex(log, o.savePath, s, info); err != nil {
			return nil, err
		}
	}
	if o.reuse {
		if _, err := snapshot.WriteIndex(kept, s, info); err != nil {
			log.Warn().Err(err).Msg("cannot keep the index in the cache directory; the next mount will walk again")
		} else {
			log.Info().Str("index", kept).Msg("kept the walk's index for --reuse-index")
		}
	}
	return s, nil
}

func saveIndex(log zerolog.Logger, path string, s *snapshot.Snapshot, info snapshot.IndexInfo) error {
	start := time.Now()
	info, err := snapshot.WriteIndex(path, s, info)
	if err != nil {
		return withCode(exitIndex, fmt.Errorf("--save-index: %w; nothing mounted", err))
	}
	log.Info().Str("index", path).Int64("bytes", info.Size).Float64("seconds", time.Since(start).Seconds()).Msg("saved the snapshot index")
	return nil
}

// load reads the index named by --index and checks that it belongs to src,
// and that it holds ACLs when the mount is shared. The one metadata call it
// makes on the source is a stat of its root.
func (o *indexOptions) load(log zerolog.Logger, src string, root *unix.Stat_t, shared bool) (*snapshot.Snapshot, error) {
	start := time.Now()
	s, info, err := snapshot.ReadIndex(o.path)
	if err != nil {
		hint := fmt.Sprintf("rebuild it with 'cachefs snapshot %s -o %s'", src, o.path)
		if errors.Is(err, os.ErrNotExist) {
			hint = fmt.Sprintf("make it with 'cachefs snapshot %s -o %s' or 'cachefs mount --save-index'", src, o.path)
		}
		return nil, withCode(exitIndex, fmt.Errorf("%w; %s", err, hint))
	}
	loadSecs := time.Since(start).Seconds()
	if shared && !info.ACLs {
		return nil, withCode(exitIndex, fmt.Errorf("snapshot index %s was made without POSIX ACLs (kept by a mount without --allow-other), so an --allow-other mount cannot enforce them; rebuild it with 'cachefs snapshot %s -o %s'",
			o.path, info.Source, o.path))
	}
	age := info.Age(time.Now())
	if o.maxAge > 0 && age > time.Duration(o.maxAge) {
		return nil, withCode(exitIndex, fmt.Errorf("snapshot index %s is too old: its walk of %s began %s ago (%s), over --max-index-age %s; rebuild it with 'cachefs snapshot %s -o %s'",
			o.path, info.Source, roundAge(age), info.WalkStart.Format(time.RFC3339), o.maxAge, info.Source, o.path))
	}
	st := root
	if st.Ino != info.RootIno {
		return nil, withCode(exitIndex, fmt.Errorf("snapshot index %s was made from %s (root inode %d), but %s has root inode %d: another directory; use its own index or rebuild with 'cachefs snapshot %s -o INDEX'",
			o.path, info.Source, info.RootIno, src, st.Ino, src))
	}
	ev := log.Info()
	if info.Source != src {
		// The same directory is often mounted under different paths on
		// login and compute nodes; the inode is what identifies it.
		ev = ev.Str("indexed_as", info.Source)
	}
	if st.Mtim.Nano() != info.RootMtime {
		log.Warn().Str("index", o.path).Msg("the source root was modified since the index was made (entries added, removed or renamed at the top level); the mount serves the index's view")
	}
	ev.Str("index", o.path).Str("host", info.Host).Time("walked", info.WalkStart).Str("age", roundAge(age).String()).
		Int64("entries", info.Stats.Entries).Int64("unreadable", info.Stats.Errors).Int64("bytes", info.Size).
		Float64("seconds", loadSecs).Msg("loaded the snapshot index instead of walking")
	return s, nil
}

// reuseKept loads the index kept in the cache directory if the source's root
// still matches it, and it holds ACLs when they are needed (a private mount
// keeps one without). Any problem means a walk, never a failed mount.
func (o *indexOptions) reuseKept(log zerolog.Logger, src, kept string, root *unix.Stat_t, needACLs bool) (*snapshot.Snapshot, snapshot.IndexInfo, bool) {
	s, info, err := snapshot.ReadIndex(kept)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Info().Msg("no kept index in the cache directory yet: walking")
		} else {
			log.Warn().Err(err).Msg("the kept index is unusable: walking")
		}
		return nil, info, false
	}
	st := root
	var why []string
	if info.Source != src {
		why = append(why, "it was made from "+info.Source)
	}
	if st.Ino != info.RootIno || st.Dev != info.RootDev {
		why = append(why, fmt.Sprintf("root identity (dev %d, ino %d) is now (dev %d, ino %d)", info.RootDev, info.RootIno, st.Dev, st.Ino))
	}
	if st.Mtim.Nano() != info.RootMtime || st.Ctim.Nano() != info.RootCtime {
		why = append(why, "the source root's mtime or ctime changed")
	}
	age := info.Age(time.Now())
	if o.maxAge > 0 && age > time.Duration(o.maxAge) {
		why = append(why, fmt.Sprintf("it is %s old, over --max-index-age %s", roundAge(age), o.maxAge))
	}
	if needACLs && !info.ACLs {
		why = append(why, "it was made without POSIX ACLs, which --allow-other and --save-index need")
	}
	if len(why) > 0 {
		log.Info().Str("reason", strings.Join(why, "; ")).Msg("the kept index is stale: walking")
		return nil, info, false
	}
	log.Info().Str("index", kept).Time("walked", info.WalkStart).Str("age", roundAge(age).String()).
		Int64("entries", info.Stats.Entries).Msg("reusing the kept index: the source root is unchanged")
	return s, info, true
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func roundAge(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// ageDuration is a flag value taking Go durations plus days ("7d", "1.5d").
type ageDuration time.Duration

func (a ageDuration) String() string {
	if a == 0 {
		return "0"
	}
	return time.Duration(a).String()
}

func (a *ageDuration) Set(s string) error {
	s = strings.TrimSpace(s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		f, err := strconv.ParseFloat(days, 64)
		if err != nil || f < 0 || f > 1e5 {
			return fmt.Errorf("want a duration such as 90m, 12h or 7d")
		}
		d = time.Duration(f * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 90m, 12h or 7d")
		}
	}
	*a = ageDuration(d)
	return nil
}

func (a ageDuration) Type() string { return "duration" }

// indexSummary is the size of an index for summary lines.
func indexSummary(info snapshot.IndexInfo) string {
	per := 0.0
	if info.Stats.Entries > 0 {
		per = float64(info.Size) / float64(info.Stats.Entries)
	}
	return fmt.Sprintf("%s, %.0f B/entry", humanize.IBytes(uint64(info.Size)), per)
}
