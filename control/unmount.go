package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cachefs/cachefs/mounttable"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Unmount takes a mount away and waits for its daemon: `cachefs unmount`.
type Unmount struct {
	Mountpoint string // resolved
	Lazy       bool   // detach even if files are open or the daemon is stuck
	// Timeout bounds the whole unmount, the wait for the daemon included.
	Timeout time.Duration
	// Keep keeps a writable view's changes instead of discarding them;
	// Pushed says they were pushed already.
	Keep, Pushed bool
	// Push, if set, pushes a writable view's changes before it goes. An
	// error of kind ErrConflict settles them (they are kept); any other
	// leaves the mount as it was.
	Push func(context.Context, *Record) error
	// Record reads the runtime record of a mount.
	Record  func(mountpoint string) (*Record, error)
	Runtime RuntimeDir
	Log     zerolog.Logger
	Out     io.Writer // the lines that say what happened
}

// Run unmounts u.Mountpoint.
func (u *Unmount) Run(ctx context.Context) error {
	// The timeout bounds the whole command: the probe, fusermount3 and the
	// wait for the daemon.
	ctx, cancel := context.WithTimeout(ctx, u.Timeout)
	defer cancel()
	mnt := u.Mountpoint
	rec, _ := u.Record(mnt)
	// A record whose daemon is gone says nothing of what is mounted now;
	// the kernel tells whether it is that daemon's dead mount.
	if rec != nil && (rec.Mountpoint != mnt || !mounttable.ProcessAlive(rec.Pid)) {
		rec = nil
	}
	me, err := mountedHere(mnt)
	if err != nil {
		return err
	}
	if u.isView(me) {
		return u.view(ctx, rec)
	}
	if me.FSType != mounttable.FSType {
		return fail(ErrNotMounted, fmt.Errorf("%s is a %s mount, not a cachefs one", mnt, me.FSType))
	}
	silent := false
	switch {
	case u.Lazy:
		// The remedy for a stuck mount asks nothing of the daemon.
	case rec == nil:
		// No daemon of ours on record: ask the kernel whether one is
		// there. A probe that gets no answer keeps a reference to the
		// mount until this process exits, which makes the mount busy.
		switch mounttable.Probe(mnt, min(mounttable.ProbeTimeout, u.Timeout)) {
		case mounttable.Dead:
			return u.cleanDead(ctx)
		case mounttable.Silent:
			silent = true
		}
	case mounttable.IsStopped(rec.Pid):
		// Unmounting asks nothing of the daemon; the wait below says
		// that it cannot exit while stopped.
		u.Log.Warn().Str("mountpoint", mnt).Msg(mounttable.WhyNoAnswer(rec.Pid) + "; unmounting without it")
	}
	if err := u.detachError(ctx, silent, mounttable.DetachCtx(ctx, mnt, u.Lazy)); err != nil {
		return err
	}
	switch {
	case rec == nil:
		if r, err := u.Record(mnt); err == nil && !mounttable.ProcessAlive(r.Pid) {
			u.removeRecord()
		}
		u.Log.Warn().Str("mountpoint", mnt).Msg("no runtime record of this mount's daemon; not waiting for it")
		u.say("cachefs: unmounted %s", mnt)
		return nil
	case u.Lazy:
		u.say("cachefs: detached %s; %s", mnt, lazyFate(rec.Pid))
		return nil
	}
	return u.waitDaemon(ctx, rec)
}

func (u *Unmount) say(format string, args ...any) { fmt.Fprintf(u.Out, format+"\n", args...) }

// removeRecord removes the mount's record, if any. A record that stays is
// harmless: readers check that its daemon runs.
func (u *Unmount) removeRecord() { _ = unix.Unlink(u.Runtime.RecordPath(u.Mountpoint)) }

// mountedHere returns the mount at mnt, or why there is none.
func mountedHere(mnt string) (mounttable.Entry, error) {
	me, mounted, err := mounttable.Find(mnt)
	if err != nil {
		return me, err
	}
	if !mounted {
		return me, fail(ErrNotMounted, fmt.Errorf("%s is not mounted", mnt))
	}
	return me, nil
}

// detachError says why detaching failed, if it did; silent: the daemon
// did not answer a probe.
func (u *Unmount) detachError(ctx context.Context, silent bool, err error) error {
	mnt := u.Mountpoint
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY) && silent:
		return fail(ErrBusy, fmt.Errorf("%s does not answer; 'cachefs unmount --lazy %s' detaches it", mnt, mnt))
	case errors.Is(err, unix.EBUSY):
		return busy(mnt)
	case ctx.Err() != nil:
		return fail(ErrTimeout, fmt.Errorf("unmounting %s took longer than %s: %w", mnt, u.Timeout, err))
	}
	return err
}

func busy(mnt string) error {
	return fail(ErrBusy, fmt.Errorf("%s is busy: processes have files open or a working directory on it (see 'fuser -vm %s'); close them, or use --lazy", mnt, mnt))
}

// cleanDead removes the mount of a daemon that died and its record.
func (u *Unmount) cleanDead(ctx context.Context) error {
	if err := mounttable.DetachCtx(ctx, u.Mountpoint, true); err != nil {
		return fmt.Errorf("cleaning the dead mount at %s: %w", u.Mountpoint, err)
	}
	u.removeRecord()
	u.say("cachefs: cleaned %s: its daemon had died", u.Mountpoint)
	return nil
}

// lazyFate says when a lazily detached daemon will exit.
func lazyFate(pid int) string {
	if mounttable.IsStopped(pid) {
		return fmt.Sprintf("daemon %d is stopped and exits once continued (SIGCONT) and the last open file closes", pid)
	}
	return fmt.Sprintf("daemon %d exits when the last open file closes", pid)
}

// waitDaemon waits for an unmounted daemon to exit and prints its figures.
func (u *Unmount) waitDaemon(ctx context.Context, rec *Record) error {
	mnt := u.Mountpoint
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for mounttable.ProcessAlive(rec.Pid) {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fail(ErrTimeout, fmt.Errorf("unmounted %s, but %s after %s", mnt, StillThere(rec.Pid), u.Timeout))
			}
			return fail(ErrInterrupted, errors.New("interrupted while waiting for the daemon"))
		case <-tick.C:
		}
	}
	final, _ := u.Record(mnt)
	u.removeRecord()
	if final == nil || final.Final == nil {
		u.say("cachefs: unmounted %s (the daemon left no figures; see %s)", mnt, rec.LogFile)
		return nil
	}
	u.say("cachefs: unmounted %s: %s", mnt, final.Final.Figures())
	return nil
}

// StillThere describes a daemon that outlived the wait for it.
func StillThere(pid int) string {
	if mounttable.IsStopped(pid) {
		return fmt.Sprintf("daemon %d is stopped; it exits once continued (SIGCONT)", pid)
	}
	return fmt.Sprintf("daemon %d is still running", pid)
}

// AfterJob unmounts at the end of `cachefs run`, whose daemon rec is: busy
// (something the job left behind still has files open) falls back to a
// lazy detach; a mount its daemon already took away (the scheduler
// signalled the whole step) needs only the wait for that daemon.
func (u *Unmount) AfterJob(rec *Record) error {
	err := u.Run(context.Background())
	notMounted := errors.Is(err, ErrNotMounted)
	// The daemon, signalled with the rest of the step, may unmount between
	// our look at the mount table and our unmount.
	if _, mounted, ferr := mounttable.Find(u.Mountpoint); err != nil && ferr == nil && !mounted {
		notMounted = true
	}
	switch {
	case notMounted:
		if rec != nil && !waitGone(rec.Pid, u.Timeout) {
			return fail(ErrTimeout, fmt.Errorf("%s was unmounted, but %s after %s", u.Mountpoint, StillThere(rec.Pid), u.Timeout))
		}
		u.say("cachefs: %s was already unmounted (its daemon was signalled)", u.Mountpoint)
		return nil
	case errors.Is(err, ErrBusy):
		u.Lazy = true
		return u.Run(context.Background())
	}
	return err
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for mounttable.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
