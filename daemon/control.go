package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/cachedir"
	"github.com/cachefs/cachefs/control"
	cfs "github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// state is what the control socket reports on and acts upon.
type state struct {
	cfg         *Config
	started     time.Time
	snap        *snapshot.Snapshot
	m           *cfs.Mount
	cache       *blockcache.Cache
	content     cacheContent
	pf          *prefetch.Prefetcher // nil without prefetch
	passthrough bool
	openMode    string // how files are opened, and why
	log         zerolog.Logger
	wv          *writableView // nil for a read-only mount
	fuseMnt     string        // where m is mounted: a view's lower layer, or the mountpoint
	peers       *peers        // nil without --peers
}

var _ control.Handler = (*state)(nil)

func (d *state) Status() control.StatusReply {
	s := d.m.Stats()
	r := control.StatusReply{
		Schema: control.StatusSchema, Source: d.cfg.Source, Mountpoint: d.cfg.Mountpoint, CacheDir: d.cfg.CacheDir, LogFile: d.cfg.LogFile,
		Pid: os.Getpid(), UptimeSeconds: time.Since(d.started).Seconds(), Snapshot: d.snap.Stats(), Cache: d.cache.Stats(),
		Opens: s.Opens.Load(), BytesServed: s.BytesServed.Load(), Errors: s.Errors.Load(),
		Passthrough: d.passthrough, OpenMode: d.openMode, Peers: d.peers.stats(),
	}
	if d.pf != nil {
		ps := d.pf.Stats()
		r.Prefetch = &ps
	}
	if d.wv != nil {
		r.Writable = upperStatus(d.wv.layout.Upper)
	}
	return r
}

// Warm fetches every regular file below the paths asked for, reporting
// progress every 200 ms.
func (d *state) Warm(ctx context.Context, req control.WarmRequest, send func(control.WarmMsg)) {
	if len(req.Paths) == 0 {
		req.Paths = []string{""}
	}
	if req.Workers <= 0 {
		req.Workers = 8
	}
	roots := make([]uint32, len(req.Paths))
	for i, p := range req.Paths {
		idx, err := d.snap.Resolve(p)
		if err != nil {
			send(control.WarmMsg{Done: true, PathError: err.Error()})
			return
		}
		roots[i] = idx
	}
	files, total := d.snap.Files(roots)
	w := &warmRun{files: files, total: total}
	stop := tick(200*time.Millisecond, func() { send(w.progress(false)) })
	err := w.run(ctx, d, req.Workers)
	stop()
	final := w.progress(true)
	for _, i := range files {
		if d.content.cached(i) {
			final.FilesCached++
		}
	}
	if err != nil {
		if errors.Is(err, blockcache.ErrNoRoom) {
			err = fmt.Errorf("the cache budget is too small to hold everything asked for: %w", err)
		}
		final.Error = err.Error()
	}
	d.log.Info().Strs("paths", req.Paths).Int64("files", final.FilesCached).Int64("fetched", final.Fetched).
		Str("error", final.Error).Msg("warm finished")
	send(final)
}

// warmRun counts one warm's progress.
type warmRun struct {
	files                         []uint32
	total                         int64
	filesDone, bytesDone, fetched atomic.Int64
}

func (w *warmRun) progress(final bool) control.WarmMsg {
	return control.WarmMsg{FilesDone: w.filesDone.Load(), FilesTotal: int64(len(w.files)), BytesDone: w.bytesDone.Load(),
		BytesTotal: w.total, Fetched: w.fetched.Load(), Done: final}
}

func (w *warmRun) run(ctx context.Context, d *state, workers int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, i := range w.files {
		g.Go(func() error {
			n, err := d.content.warm(gctx, i)
			w.fetched.Add(n)
			if err != nil {
				return fmt.Errorf("%s: %w", d.snap.Path(i), err)
			}
			w.filesDone.Add(1)
			w.bytesDone.Add(d.snap.Attr(i).Size)
			return nil
		})
	}
	return g.Wait()
}

// tick calls f every d until stop is called; stop returns after the last
// call, so nothing the caller sends next interleaves with one.
func tick(d time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
	}
}

func (d *state) socket() string { return cachedir.Layout(d.cfg.CacheDir).Socket() }
