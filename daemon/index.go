package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cachefs/cachefs/cachedir"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// takeSnapshot walks the source, or loads the snapshot from an index. A
// shared mount (AllowOther) needs a snapshot with ACLs; a walk for
// SavePath records them whatever the mount, since an index is made once
// for many mounts. Walk errors are left to the caller.
func takeSnapshot(ctx context.Context, log zerolog.Logger, c *Config, root *unix.Stat_t, wo snapshot.WalkOptions) (*snapshot.Snapshot, error) {
	o := c.Index
	if o.Path != "" {
		return loadIndex(log, o, c.Source, root, c.AllowOther)
	}
	kept := cachedir.Layout(c.CacheDir).Index()
	if o.Reuse {
		if s, info, ok := reuseKept(log, o, c.Source, kept, root, c.AllowOther || o.SavePath != ""); ok {
			if o.SavePath != "" {
				if err := saveIndex(log, o.SavePath, s, info); err != nil {
					return nil, err
				}
			}
			return s, nil
		}
	}
	start := time.Now()
	wo.ACLs = wo.ACLs || o.SavePath != ""
	s, err := snapshot.Walk(ctx, c.Source, wo)
	if err != nil {
		return nil, err
	}
	info := snapshot.IndexInfo{Source: c.Source, Host: Hostname(), WalkStart: start, WalkDuration: time.Since(start), RootDev: root.Dev}
	if o.SavePath != "" {
		if err := saveIndex(log, o.SavePath, s, info); err != nil {
			return nil, err
		}
	}
	if o.Reuse {
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
		return fail(ErrIndex, fmt.Errorf("--save-index: %w; nothing mounted", err))
	}
	log.Info().Str("index", path).Int64("bytes", info.Size).Float64("seconds", time.Since(start).Seconds()).Msg("saved the snapshot index")
	return nil
}

// loadIndex reads the index o.Path and checks that it belongs to src, and
// that it holds ACLs when the mount is shared. The one metadata call it
// makes on the source is the stat of its root the caller made.
func loadIndex(log zerolog.Logger, o IndexConfig, src string, st *unix.Stat_t, shared bool) (*snapshot.Snapshot, error) {
	start := time.Now()
	s, info, err := snapshot.ReadIndex(o.Path)
	if err != nil {
		hint := fmt.Sprintf("rebuild it with 'cachefs snapshot %s -o %s'", src, o.Path)
		if errors.Is(err, os.ErrNotExist) {
			hint = fmt.Sprintf("make it with 'cachefs snapshot %s -o %s' or 'cachefs mount --save-index'", src, o.Path)
		}
		return nil, fail(ErrIndex, fmt.Errorf("%w; %s", err, hint))
	}
	loadSecs := time.Since(start).Seconds()
	if shared && !info.ACLs {
		return nil, fail(ErrIndex, fmt.Errorf("snapshot index %s was made without POSIX ACLs (kept by a mount without --allow-other), so an --allow-other mount cannot enforce them; rebuild it with 'cachefs snapshot %s -o %s'",
			o.Path, info.Source, o.Path))
	}
	age := info.Age(time.Now())
	if o.MaxAge > 0 && age > o.MaxAge {
		return nil, fail(ErrIndex, fmt.Errorf("snapshot index %s is too old: its walk of %s began %s ago (%s), over --max-index-age %s; rebuild it with 'cachefs snapshot %s -o %s'",
			o.Path, info.Source, RoundAge(age), info.WalkStart.Format(time.RFC3339), o.MaxAge, info.Source, o.Path))
	}
	if !info.SameRoot(st) {
		return nil, fail(ErrIndex, fmt.Errorf("snapshot index %s was made from %s (root inode %d), but %s has root inode %d: another directory; use its own index or rebuild with 'cachefs snapshot %s -o INDEX'",
			o.Path, info.Source, info.RootIno, src, st.Ino, src))
	}
	ev := log.Info()
	if info.Source != src {
		// The same directory is often mounted under different paths on
		// login and compute nodes; the inode is what identifies it.
		ev = ev.Str("indexed_as", info.Source)
	}
	if st.Mtim.Nano() != info.RootMtime {
		log.Warn().Str("index", o.Path).Msg("the source root was modified since the index was made (entries added, removed or renamed at the top level); the mount serves the index's view")
	}
	ev.Str("index", o.Path).Str("host", info.Host).Time("walked", info.WalkStart).Str("age", RoundAge(age).String()).
		Int64("entries", info.Stats.Entries).Int64("unreadable", info.Stats.Errors).Int64("bytes", info.Size).
		Float64("seconds", loadSecs).Msg("loaded the snapshot index instead of walking")
	return s, nil
}

// reuseKept loads the index kept in the cache directory if the source's
// root still matches it, and it holds ACLs when they are needed (a private
// mount keeps one without). Any problem means a walk, never a failed mount.
func reuseKept(log zerolog.Logger, o IndexConfig, src, kept string, st *unix.Stat_t, needACLs bool) (*snapshot.Snapshot, snapshot.IndexInfo, bool) {
	s, info, err := snapshot.ReadIndex(kept)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Info().Msg("no kept index in the cache directory yet: walking")
		} else {
			log.Warn().Err(err).Msg("the kept index is unusable: walking")
		}
		return nil, info, false
	}
	var why []string
	if info.Source != src {
		why = append(why, "it was made from "+info.Source)
	}
	if !info.SameRoot(st) || st.Dev != info.RootDev {
		why = append(why, fmt.Sprintf("root identity (dev %d, ino %d) is now (dev %d, ino %d)", info.RootDev, info.RootIno, st.Dev, st.Ino))
	}
	if st.Mtim.Nano() != info.RootMtime || st.Ctim.Nano() != info.RootCtime {
		why = append(why, "the source root's mtime or ctime changed")
	}
	age := info.Age(time.Now())
	if o.MaxAge > 0 && age > o.MaxAge {
		why = append(why, fmt.Sprintf("it is %s old, over --max-index-age %s", RoundAge(age), o.MaxAge))
	}
	if needACLs && !info.ACLs {
		why = append(why, "it was made without POSIX ACLs, which --allow-other and --save-index need")
	}
	if len(why) > 0 {
		log.Info().Str("reason", strings.Join(why, "; ")).Msg("the kept index is stale: walking")
		return nil, info, false
	}
	log.Info().Str("index", kept).Time("walked", info.WalkStart).Str("age", RoundAge(age).String()).
		Int64("entries", info.Stats.Entries).Msg("reusing the kept index: the source root is unchanged")
	return s, info, true
}

// Hostname names this node in an index, "" if it cannot be known.
func Hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// RoundAge rounds an index's age for people: seconds above a minute.
func RoundAge(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
