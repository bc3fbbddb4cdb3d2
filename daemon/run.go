package daemon

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"os"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/control"
	cfs "github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/privdir"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Run checks, walks, mounts, reports readiness to rep, and serves until the
// mount is unmounted or ctx ends; then it unmounts, lazily if files are
// open, and leaves its final figures in the runtime record.
func Run(ctx context.Context, c Config, rep Reporter) error {
	log := c.Logger
	rootSt, err := prepare(log, &c)
	if err != nil {
		return err
	}
	if log, err = c.openLog(log); err != nil {
		return err
	}
	log = log.With().Str("mountpoint", c.Mountpoint).Logger()
	defer c.Early.startCPUProfile(log)()
	cache, pr, err := openCache(log, &c, rootSt.Dev)
	if err != nil {
		return err
	}
	defer func() {
		if err := cache.Close(); err != nil {
			log.Warn().Err(err).Msg("closing the block cache")
		}
	}()
	defer pr.close()

	start := time.Now()
	snap, err := c.walk(ctx, log, &rootSt, rep)
	if err != nil {
		return err
	}
	walkSecs := time.Since(start).Seconds()
	defer pr.serve(log, snap, cache)()

	var wv *writableView
	if c.Writable {
		if wv, err = prepareWritable(log, &c, snap); err != nil {
			return err
		}
	}
	d, err := c.mount(log, snap, cache, wv)
	if err != nil {
		return err
	}
	if d.pf != nil {
		defer d.content.pc.close()
		defer d.pf.Close()
	}
	d.peers = pr
	return d.serve(ctx, rep, walkSecs)
}

// openLog moves logging into the log file, stderr included, when the
// daemon runs in the background.
func (c *Config) openLog(log zerolog.Logger) (zerolog.Logger, error) {
	if c.LogTo == nil {
		return log, nil
	}
	lf, err := privdir.OpenAppend(c.LogFile)
	if err != nil {
		return log, fail(ErrCacheDir, fmt.Errorf("log file: %w", err))
	}
	// Panics and anything else written to stderr land in the log too.
	if err := unix.Dup2(int(lf.Fd()), 2); err != nil {
		log.Warn().Err(err).Msg("stderr not redirected to the log file")
	}
	return c.LogTo(lf), nil
}

// walk takes the snapshot, reporting progress while it walks.
func (c *Config) walk(ctx context.Context, log zerolog.Logger, root *unix.Stat_t, rep Reporter) (*snapshot.Snapshot, error) {
	log.Info().Str("source", c.Source).Int("pid", os.Getpid()).Msg("taking the snapshot")
	prog := &snapshot.Progress{}
	stop := prog.Watch(200*time.Millisecond, rep.Progress)
	wo := snapshot.WalkOptions{Walkers: c.Walkers, Progress: prog, Logger: log, ACLs: c.AllowOther}
	snap, err := takeSnapshot(ctx, log, c, root, wo)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fail(ErrInterrupted, errors.New("interrupted while walking the source; nothing mounted"))
		}
		return nil, fail(ErrSource, err)
	}
	return snap, nil
}

// mount mounts snap with its prefetcher, stacks the writable view wv (if
// any) over it, and settles how files are opened. With a view, snap is
// mounted at the view's lower directory.
func (c *Config) mount(log zerolog.Logger, snap *snapshot.Snapshot, cache *blockcache.Cache, wv *writableView) (*state, error) {
	content := cacheContent{snap: snap, cache: cache}
	pc := newPageCache(log, content, min(c.BlockSize, pageCacheMax))
	w := prefetchWarmer{content, pc}
	if c.Early.NoPageCache {
		w.pc = nil
	}
	pf, onOpen, onList, err := c.startPrefetch(log, snap, w)
	if err != nil {
		return nil, err
	}
	var onLookup, onForget func(uint32)
	if pf != nil && !c.Early.NoPageCache {
		onLookup, onForget, content.pc = pc.onLookup, pc.onForget, pc
	}
	fuseMnt := c.Mountpoint
	if wv != nil {
		fuseMnt = wv.layout.Lower
	}
	fsLog := log.With().Str("component", "fuse").Logger()
	m, err := cfs.New(fuseMnt, cfs.Config{
		Snapshot:    snap,
		Content:     content,
		OnOpen:      onOpen,
		OnList:      onList,
		OnLookup:    onLookup,
		OnForget:    onForget,
		FsName:      c.Source,
		AllowOther:  c.AllowOther,
		Logger:      fsLog,
		Debug:       c.DebugFuse,
		GoFuseLog:   stdlog.New(fsLog, "", 0),
		Passthrough: c.Passthrough != PassthroughOff,
	})
	if err != nil {
		if pf != nil {
			pf.Close()
		}
		return nil, fail(ErrMountFailed, err)
	}
	if wv != nil {
		if err := wv.mount(); err != nil {
			if uerr := m.Unmount(); uerr != nil {
				log.Warn().Err(uerr).Msg("unmounting the read-only layer of a view that failed")
			}
			if pf != nil {
				pf.Close()
			}
			return nil, err
		}
	}
	if content.pc != nil {
		pc.start(m)
	}
	ptOK, why := m.PassthroughAvailable()
	ptOK, why = choosePassthrough(c.Passthrough, ptOK, why, snap.Stats())
	if !ptOK {
		m.KernelOpens()
	}
	log.Info().Bool("passthrough", ptOK).Msg(why)
	return &state{cfg: c, started: time.Now(), snap: snap, m: m, cache: cache, content: content,
		pf: pf, passthrough: ptOK, openMode: why, log: log, wv: wv, fuseMnt: fuseMnt}, nil
}

// serve announces the mount and serves it until it goes.
func (d *state) serve(ctx context.Context, rep Reporter, walkSecs float64) error {
	c, log := d.cfg, d.log
	if c.Serving != nil {
		c.Serving(log, func() string { r := d.Status(); return r.Figures() })
	}
	stopControl, err := control.Serve(d.socket(), d, log)
	if err != nil {
		log.Warn().Err(err).Msg("no control socket: status and warm will not reach this mount")
		stopControl = func() {}
	}
	defer stopControl()
	defer d.startMetrics()()
	st := d.snap.Stats()
	rec := &control.Record{Pid: os.Getpid(), Source: c.Source, Mountpoint: c.Mountpoint, CacheDir: c.CacheDir, LogFile: c.LogFile, Started: d.started}
	ready := Ready{Schema: ReadySchema, Source: c.Source, Mountpoint: c.Mountpoint, CacheDir: c.CacheDir, LogFile: c.LogFile,
		Stats: st, Seconds: walkSecs, Pid: os.Getpid()}
	if d.wv != nil {
		rec.Writable, ready.Writable = d.wv.record(), d.wv.describe()
	}
	if err := c.Runtime.Write(rec); err != nil {
		log.Warn().Err(err).Msg("cannot write the runtime record; unmount will not wait for this daemon")
	}
	log.Info().Int64("entries", st.Entries).Int64("bytes", st.Bytes).Int64("unreadable", st.Errors).
		Float64("seconds", walkSecs).Msg("serving")
	rep.Ready(ready)

	d.waitUnmounted(ctx)

	final := d.Status()
	rec.Exited, rec.Final = true, &final
	log.Info().Msg(final.Figures())
	if err := c.Runtime.Write(rec); err != nil {
		log.Warn().Err(err).Msg("cannot write the final figures")
	}
	return nil
}

// waitUnmounted returns once the mount is gone: unmounted by someone, or
// by this daemon when ctx ends. The read-only layer of a writable view
// goes when its view does, so nobody is left served who cannot reach it.
func (d *state) waitUnmounted(ctx context.Context) {
	served := make(chan struct{})
	if d.wv != nil {
		go d.wv.watch(served, func() {
			d.log.Info().Msg("the writable view was unmounted: unmounting the read-only layer")
			if err := mounttable.Detach(d.fuseMnt, true); err != nil {
				d.log.Error().Err(err).Msg("lazy unmount failed")
			}
		})
	}
	go func() {
		select {
		case <-served:
		case <-ctx.Done():
			d.log.Info().Msg("signal received: unmounting")
			if d.wv != nil {
				d.wv.unmount(d.log)
			}
			if err := d.m.Unmount(); err != nil {
				// Files are still open; detach so the job's next steps see
				// no mount, and finish when the last file closes.
				d.log.Warn().Err(err).Msg("unmount failed, detaching lazily")
				if err := mounttable.Detach(d.fuseMnt, true); err != nil {
					d.log.Error().Err(err).Msg("lazy unmount failed")
				}
			}
		}
	}()
	d.m.Wait()
	close(served)
}
