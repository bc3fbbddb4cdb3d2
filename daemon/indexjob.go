package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// IndexJob walks a source for `cachefs snapshot`: to write its index, or
// to compare an index with it.
type IndexJob struct {
	Walkers  int
	Log      zerolog.Logger
	Progress func(snapshot.Counts) // the walk's counters, every 200 ms
}

// Written is what Write wrote.
type Written struct {
	Stats   snapshot.Stats
	Seconds float64
	Info    snapshot.IndexInfo
}

// Write walks src, with ACLs so that the index serves any mount, and
// writes its index to out atomically.
func (j IndexJob) Write(ctx context.Context, src, out string) (Written, error) {
	if fi, err := os.Stat(out); err == nil && fi.IsDir() {
		return Written{}, fail(ErrIndex, fmt.Errorf("-o %s is a directory; name the index file", out))
	}
	st, err := CheckSource(src)
	if err != nil {
		return Written{}, err
	}
	start := time.Now()
	s, err := j.walk(ctx, src, true)
	if err != nil {
		return Written{}, err
	}
	w := Written{Stats: s.Stats(), Seconds: time.Since(start).Seconds()}
	w.Info, err = snapshot.WriteIndex(out, s, snapshot.IndexInfo{Source: src, Host: Hostname(), WalkStart: start,
		WalkDuration: time.Since(start), RootDev: st.Dev})
	if err != nil {
		return w, fail(ErrIndex, fmt.Errorf("%w; no index written", err))
	}
	return w, nil
}

// walk walks src, reporting progress.
func (j IndexJob) walk(ctx context.Context, src string, acls bool) (*snapshot.Snapshot, error) {
	prog := &snapshot.Progress{}
	stop := prog.Watch(200*time.Millisecond, j.Progress)
	s, err := snapshot.Walk(ctx, src, snapshot.WalkOptions{Walkers: j.Walkers, Progress: prog, Logger: j.Log, ACLs: acls})
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fail(ErrInterrupted, errors.New("interrupted while walking the source; no index written"))
		}
		return nil, fail(ErrSource, err)
	}
	return s, nil
}

// Checked is what Check found.
type Checked struct {
	Index   string
	Info    snapshot.IndexInfo // the index's
	Source  string             // the directory walked
	Now     snapshot.Stats     // of the walk
	Seconds float64            // the walk took
	Diff    snapshot.DiffResult
}

// Check loads the index idx, walks its source (src, or the one the index
// names if src is empty) again, and lists show paths of each kind of
// difference.
func (j IndexJob) Check(ctx context.Context, idx, src string, show int) (Checked, error) {
	old, info, err := snapshot.ReadIndex(idx)
	if err != nil {
		return Checked{}, fail(ErrIndex, err)
	}
	c := Checked{Index: idx, Info: info, Source: src}
	if c.Source == "" {
		c.Source = info.Source
	}
	st, err := CheckSource(c.Source)
	if err != nil {
		return c, err
	}
	if !info.SameRoot(&st) {
		return c, fail(ErrIndex, fmt.Errorf("snapshot index %s was made from %s (root inode %d), but %s has root inode %d: another directory",
			idx, info.Source, info.RootIno, c.Source, st.Ino))
	}
	start := time.Now()
	// ACLs are compared when the index holds them: a shared mount from it
	// enforces those, not the source's.
	cur, err := j.walk(ctx, c.Source, info.ACLs)
	if err != nil {
		return c, err
	}
	c.Seconds, c.Now = time.Since(start).Seconds(), cur.Stats()
	c.Diff = snapshot.Diff(old, cur, show)
	return c, nil
}
