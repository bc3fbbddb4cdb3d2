package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type unmountOptions struct {
	lazy    bool
	timeout time.Duration
}

func (o *unmountOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.lazy, "lazy", false, "detach now even if files are open; the daemon exits when the last one closes")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for the daemon to exit")
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
	mnt, err := resolvePath(args[0])
	if err != nil {
		return usageError(err)
	}
	rec, _ := readRecord(mnt)
	if rec != nil && rec.Mountpoint != mnt {
		rec = nil
	}
	me, mounted, err := findMount(mnt)
	if err != nil {
		return withCode(exitInternal, err)
	}
	if !mounted {
		return withCode(exitNotMounted, fmt.Errorf("%s is not mounted", mnt))
	}
	if me.FSType != fsType {
		return withCode(exitNotMounted, fmt.Errorf("%s is a %s mount, not a cachefs one", mnt, me.FSType))
	}
	if isStale(mnt) {
		if err := detach(mnt, true); err != nil {
			return withCode(exitInternal, fmt.Errorf("cleaning the dead mount at %s: %w", mnt, err))
		}
		_ = os.Remove(recordPath(mnt))
		fmt.Printf("cachefs: cleaned %s: its daemon had died\n", mnt)
		return nil
	}
	if err := detach(mnt, o.lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return withCode(exitBusy, fmt.Errorf("%s is busy: processes have files open or a working directory on it (see 'fuser -vm %s'); close them, or use --lazy", mnt, mnt))
		}
		return withCode(exitInternal, err)
	}
	if rec == nil {
		log.Warn().Str("mountpoint", mnt).Msg("no runtime record of this mount's daemon; not waiting for it")
		fmt.Printf("cachefs: unmounted %s\n", mnt)
		return nil
	}
	if o.lazy {
		fmt.Printf("cachefs: detached %s; daemon %d exits when the last open file closes\n", mnt, rec.Pid)
		return nil
	}
	deadline := time.Now().Add(o.timeout)
	for processAlive(rec.Pid) {
		if time.Now().After(deadline) {
			return withCode(exitTimeout, fmt.Errorf("unmounted %s, but daemon %d is still running after %s", mnt, rec.Pid, o.timeout))
		}
		select {
		case <-ctx.Done():
			return withCode(exitInterrupted, errors.New("interrupted while waiting for the daemon"))
		case <-time.After(20 * time.Millisecond):
		}
	}
	final, _ := readRecord(mnt)
	_ = os.Remove(recordPath(mnt))
	if final == nil || final.Final == nil {
		fmt.Printf("cachefs: unmounted %s (the daemon left no figures; see %s)\n", mnt, rec.LogFile)
		return nil
	}
	fmt.Printf("cachefs: unmounted %s: %s\n", mnt, figuresLine(final.Final))
	return nil
}
