package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/push"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type pushOptions struct {
	force   bool
	delete  bool
	dryRun  bool
	json    bool
	exclude []string
}

// AddFlags adds the flags push and unmount --push share.
func (o *pushOptions) AddFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.force, "force", false, "overwrite files that changed on SOURCE since the snapshot")
	f.BoolVar(&o.delete, "delete", false, "also remove from SOURCE the files deleted through the mount (if unchanged on SOURCE)")
	f.StringArrayVar(&o.exclude, "exclude", nil, "do not push names or relative paths matching this pattern (repeatable; *.lock is always excluded; a trailing / names a directory)")
}

func newPushCommand(g *globalOptions) *cobra.Command {
	o := &pushOptions{}
	cmd := &cobra.Command{
		Use:   "push MOUNTPOINT",
		Short: "Copy the changes made through a writable mount to SOURCE",
		Long:  help("push", "\n"+exitStatusHelp),
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPush(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd.Flags())
	cmd.Flags().BoolVarP(&o.dryRun, "dry-run", "n", false, "list what would be pushed; write nothing")
	cmd.Flags().BoolVar(&o.json, "json", false, "print the result as JSON")
	return cmd
}

func runPush(ctx context.Context, g *globalOptions, o *pushOptions, args []string) error {
	if _, err := g.logger(os.Stderr); err != nil {
		return err
	}
	mnt, err := mounttable.Resolve(args[0])
	if err != nil {
		return usageError(err)
	}
	rec, _ := readRecord(mnt)
	if rec == nil || rec.Mountpoint != mnt {
		return withCode(exitNotMounted, fmt.Errorf("%s: no record of a cachefs mount here", mnt))
	}
	return pushRecord(ctx, g, o, rec)
}

// pushRecord pushes the writable view a mount record describes, prints
// the outcome, and maps it to an exit status.
func pushRecord(ctx context.Context, g *globalOptions, o *pushOptions, rec *control.Record) error {
	if rec.Writable == nil {
		return usageError(fmt.Errorf("%s is a read-only mount: nothing to push (mount with --writable)", rec.Mountpoint))
	}
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	term := newTermReporter()
	res, err := control.Push(ctx, rec, push.Options{Force: o.force, Delete: o.delete, DryRun: o.dryRun, Exclude: o.exclude,
		Logger:   log.With().Str("component", "push").Logger(),
		Progress: func(r push.Result) { term.pushProgress(r) }})
	term.clear()
	if res != nil {
		printPush(o, rec, res)
	}
	return err
}

func (t *termReporter) pushProgress(r push.Result) {
	t.draw("pushing: %d files (%s), %d dirs, %d conflicts", r.Copied, humanize.IBytes(uint64(r.Bytes)), r.Dirs, r.Conflicts)
}

func printPush(o *pushOptions, rec *control.Record, r *push.Result) {
	if !o.json {
		fmt.Print(control.PushReport(r, rec.Source))
		return
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(b))
}
