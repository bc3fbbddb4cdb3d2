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
	cfs "github.com/cachefs/cachefs/fs"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/prefetch"
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
	cache, err := openCache(log, &c, rootSt.Dev)
	if err != nil {
		return err
	}
	defer func() {
		if err := cache.Close(); err != nil {
			log.Warn().Err(err).Msg("closing the block cache")
		}
	}()

	start := time.Now()
	snap, err := c.walk(ctx, log, &rootSt, rep)
	if err != nil {
		return err
	}
	walkSecs := time.Since(start).Seconds()

	d, err := c.mount(log, snap, cache)
	if err != nil {
		return err
	}
	if d.pf != nil {
		defer d.pf.Close()
	}
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

// mount mounts snap with its prefetcher and settles how files are opened.
func (c *Config) mount(log zerolog.Logger, snap *snapshot.Snapshot, cache *blockcache.Cache) (*state, error) {
	content := cacheContent{snap: snap, cache: cache}
	var pf *prefetch.Prefetcher
	var onOpen func(uint32)
	if c.Prefetch != nil {
		opts := *c.Prefetch
		opts.Logger = log.With().Str("component", "prefetch").Logger()
		pf = prefetch.New(snap, prefetchWarmer{content}, opts)
		onOpen = pf.OnOpen
	}
	fsLog := log.With().Str("component", "fuse").Logger()
	m, err := cfs.New(c.Mountpoint, cfs.Config{
		Snapshot:    snap,
		Content:     content,
		OnOpen:      onOpen,
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
	ptOK, why := m.PassthroughAvailable()
	ptOK, why = choosePassthrough(c.Passthrough, ptOK, why, snap.Stats())
	if !ptOK {
		m.KernelOpens()
	}
	log.Info().Bool("passthrough", ptOK).Msg(why)
	return &state{cfg: c, started: time.Now(), snap: snap, m: m, cache: cache, content: content,
		pf: pf, passthrough: ptOK, openMode: why, log: log}, nil
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
	rec := &control.Record{Pid: os.Getpid(), Source: c.Source, Mountpoint: c.Mountpoint, CacheDir: c.CacheDir, LogFile: c.LogFile, Started: d.started}
	if err := c.Runtime.Write(rec); err != nil {
		log.Warn().Err(err).Msg("cannot write the runtime record; unmount will not wait for this daemon")
	}
	st := d.snap.Stats()
	log.Info().Int64("entries", st.Entries).Int64("bytes", st.Bytes).Int64("unreadable", st.Errors).
		Float64("seconds", walkSecs).Msg("serving")
	rep.Ready(Ready{Source: c.Source, Mountpoint: c.Mountpoint, CacheDir: c.CacheDir, LogFile: c.LogFile,
		Stats: st, Seconds: walkSecs, Pid: os.Getpid()})

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
// by this daemon when ctx ends.
func (d *state) waitUnmounted(ctx context.Context) {
	served := make(chan struct{})
	go func() {
		select {
		case <-served:
		case <-ctx.Done():
			d.log.Info().Msg("signal received: unmounting")
			if err := d.m.Unmount(); err != nil {
				// Files are still open; detach so the job's next steps see
				// no mount, and finish when the last file closes.
				d.log.Warn().Err(err).Msg("unmount failed, detaching lazily")
				if err := mounttable.Detach(d.cfg.Mountpoint, true); err != nil {
					d.log.Error().Err(err).Msg("lazy unmount failed")
				}
			}
		}
	}()
	d.m.Wait()
	close(served)
}
