package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/spf13/cobra"
)

type unmountOptions struct {
	lazy    bool
	timeout time.Duration
	push    bool
	keep    bool
	pushOpt pushOptions
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
		Long:  help("unmount", "\n"+exitStatusHelp),
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			u, err := o.unmount(g, args[0])
			if err != nil {
				return err
			}
			return u.Run(cmd.Context())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// unmount checks the flags and describes the unmount of mnt.
func (o *unmountOptions) unmount(g *globalOptions, mnt string) (*control.Unmount, error) {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return nil, err
	}
	if o.timeout <= 0 {
		return nil, usageError(fmt.Errorf("--timeout %s: want a positive duration", o.timeout))
	}
	if mnt, err = mounttable.Resolve(mnt); err != nil {
		return nil, usageError(err)
	}
	u := &control.Unmount{Mountpoint: mnt, Lazy: o.lazy, Timeout: o.timeout, Keep: o.keep,
		Record: readRecord, Runtime: runtimeDir(), Log: log, Out: os.Stdout}
	if o.push {
		u.Push = func(ctx context.Context, rec *control.Record) error { return pushRecord(ctx, g, &o.pushOpt, rec) }
	}
	return u, nil
}
