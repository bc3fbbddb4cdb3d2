package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type unmountOptions struct {
	lazy    bool
	timeout time.Duration
	push    bool
	keep    bool
	pushOpt pushOptions
	pushed  bool // the changes were pushed already (cachefs run --push)
}

func (o *unmountOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.lazy, "lazy", false, "detach now even if files are open or the daemon is stuck; the daemon exits when the last file closes")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "the most the whole unmount takes, the wait for the daemon to exit included")
	f.BoolVar(&o.push, "push", false, "writable mounts: push the changes to SOURCE first (see 'cachefs push'); with conflicts (exit 13) the changes are kept as with --keep; if the push fails otherwise nothing is unmounted")
	f.BoolVar(&o.keep, "keep", false, "writable mounts: keep the changes for a later mount over the same cache directory instead of discarding them")
	o.pushOpt.AddFlags(f)
}

func newUnmountCommand(g *globalOptions) *cobra.Command {
	o := &unmountOptions{}
	cmd := &cobra.Command{
		Use:   "unmount MOUNTPOINT",
		Short: "Unmount a cachefs mount and wait for its daemon to finish",
		Long: `Unmount MOUNTPOINT, wait for the daemon to exit, and print what it served.
Fails with exit status 8 while processes have files open on the mount, unless
--lazy is given. A mount whose daemon died is cleaned up.` + "\n" + exitStatusHelp,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnmount(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runUnmount(ctx context.Context, g *globalOptions, o *unmountOptions, args []string) error {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return usageError(fmt.Errorf("--timeout %s: want a positive duration", o.timeout))
	}
	// --timeout bounds the whole command: the probe, fusermount3 and the
	// wait for the daemon.
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	mnt, err := mounttable.Resolve(args[0])
	if err != nil {
		return usageError(err)
	}
	rec, _ := readRecord(mnt)
	// A record whose daemon is gone says nothing of what is mounted now;
	// the kernel tells whether it is that daemon's dead mount.
	if rec != nil && (rec.Mountpoint != mnt || !mounttable.ProcessAlive(rec.Pid)) {
		rec = nil
	}
	me, err := mountedHere(mnt)
	if err != nil {
		return err
	}
	if isWritableView(me) {
		return unmountView(ctx, g, o, mnt, rec)
	}
	if me.FSType != mounttable.FSType {
		return withCode(exitNotMounted, fmt.Errorf("%s is a %s mount, not a cachefs one", mnt, me.FSType))
	}
	silent := false
	switch {
	case o.lazy:
		// The remedy for a stuck mount asks nothing of the daemon.
	case rec == nil:
		// No daemon of ours on record: ask the kernel whether one is
		// there. A probe that gets no answer keeps a reference to the
		// mount until this process exits, which makes the mount busy.
		switch mounttable.Probe(mnt, min(mounttable.ProbeTimeout, o.timeout)) {
		case mounttable.Dead:
			return cleanDead(ctx, mnt)
		case mounttable.Silent:
			silent = true
		}
	case mounttable.IsStopped(rec.Pid):
		// Unmounting asks nothing of the daemon; the wait below says
		// that it cannot exit while stopped.
		log.Warn().Str("mountpoint", mnt).Msg(mounttable.WhyNoAnswer(rec.Pid) + "; unmounting without it")
	}
	if err := detachError(ctx, mnt, o, silent, mounttable.DetachCtx(ctx, mnt, o.lazy)); err != nil {
		return err
	}
	switch {
	case rec == nil:
		if r, err := readRecord(mnt); err == nil && !mounttable.ProcessAlive(r.Pid) {
			removeRecord(mnt)
		}
		log.Warn().Str("mountpoint", mnt).Msg("no runtime record of this mount's daemon; not waiting for it")
		fmt.Printf("cachefs: unmounted %s\n", mnt)
		return nil
	case o.lazy:
		fmt.Printf("cachefs: detached %s; %s\n", mnt, lazyFate(rec.Pid))
		return nil
	}
	return waitDaemon(ctx, mnt, rec, o.timeout)
}

// mountedHere returns the mount at mnt, or why there is none.
func mountedHere(mnt string) (mounttable.Entry, error) {
	me, mounted, err := mounttable.Find(mnt)
	if err != nil {
		return me, withCode(exitInternal, err)
	}
	if !mounted {
		return me, withCode(exitNotMounted, fmt.Errorf("%s is not mounted", mnt))
	}
	return me, nil
}

// detachError says why detaching failed, if it did; silent: the daemon
// did not answer a probe.
func detachError(ctx context.Context, mnt string, o *unmountOptions, silent bool, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EBUSY) && silent:
		return withCode(exitBusy, fmt.Errorf("%s does not answer; 'cachefs unmount --lazy %s' detaches it", mnt, mnt))
	case errors.Is(err, unix.EBUSY):
		return withCode(exitBusy, fmt.Errorf("%s is busy: processes have files open or a working directory on it (see 'fuser -vm %s'); close them, or use --lazy", mnt, mnt))
	case ctx.Err() != nil:
		return withCode(exitTimeout, fmt.Errorf("unmounting %s took longer than %s: %w", mnt, o.timeout, err))
	}
	return withCode(exitInternal, err)
}

// cleanDead removes the mount of a daemon that died and its record.
func cleanDead(ctx context.Context, mnt string) error {
	if err := mounttable.DetachCtx(ctx, mnt, true); err != nil {
		return withCode(exitInternal, fmt.Errorf("cleaning the dead mount at %s: %w", mnt, err))
	}
	removeRecord(mnt)
	fmt.Printf("cachefs: cleaned %s: its daemon had died\n", mnt)
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
func waitDaemon(ctx context.Context, mnt string, rec *control.Record, timeout time.Duration) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for mounttable.ProcessAlive(rec.Pid) {
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return withCode(exitTimeout, fmt.Errorf("unmounted %s, but %s after %s", mnt, stillThere(rec.Pid), timeout))
			}
			return withCode(exitInterrupted, errors.New("interrupted while waiting for the daemon"))
		case <-tick.C:
		}
	}
	final, _ := readRecord(mnt)
	removeRecord(mnt)
	if final == nil || final.Final == nil {
		fmt.Printf("cachefs: unmounted %s (the daemon left no figures; see %s)\n", mnt, rec.LogFile)
		return nil
	}
	fmt.Printf("cachefs: unmounted %s: %s\n", mnt, final.Final.Figures())
	return nil
}

// stillThere describes a daemon that outlived the wait for it.
func stillThere(pid int) string {
	if mounttable.IsStopped(pid) {
		return fmt.Sprintf("daemon %d is stopped; it exits once continued (SIGCONT)", pid)
	}
	return fmt.Sprintf("daemon %d is still running", pid)
}
