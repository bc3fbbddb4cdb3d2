package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cachefs/cachefs/daemon"
	"github.com/spf13/cobra"
)

type snapshotOptions struct {
	output  string
	check   bool
	walkers int
	show    int
}

func (o *snapshotOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "index file to write (replaced atomically)")
	f.BoolVar(&o.check, "check", false, "compare the index INDEX with its source, walked again, instead of writing one")
	f.IntVar(&o.walkers, "walkers", 64, "metadata calls kept in flight while walking the source")
	f.IntVar(&o.show, "show", 20, "with --check: paths listed of each kind of difference")
}

func newSnapshotCommand(g *globalOptions) *cobra.Command {
	o := &snapshotOptions{}
	cmd := &cobra.Command{
		Use:   "snapshot SOURCE -o INDEX | snapshot --check INDEX [SOURCE]",
		Short: "Walk SOURCE once and write a snapshot index that mounts load instead of walking",
		Long:  help("snapshot", "\n"+exitStatusHelp),
		Args: func(cmd *cobra.Command, args []string) error {
			if o.check {
				if len(args) < 1 || len(args) > 2 {
					return usageError(fmt.Errorf("snapshot --check: want INDEX [SOURCE], got %d arguments (see '%s --help')", len(args), cmd.CommandPath()))
				}
				if o.output != "" {
					return usageError(fmt.Errorf("snapshot --check writes nothing; drop -o (see '%s --help')", cmd.CommandPath()))
				}
				return nil
			}
			if err := exactArgs(1)(cmd, args); err != nil {
				return err
			}
			if o.output == "" {
				return usageError(fmt.Errorf("snapshot: -o INDEX is required (see '%s --help')", cmd.CommandPath()))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSnapshot(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runSnapshot(ctx context.Context, g *globalOptions, o *snapshotOptions, args []string) error {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	if o.walkers < 1 || o.walkers > 4096 {
		return usageError(fmt.Errorf("--walkers %d: want 1 to 4096", o.walkers))
	}
	paths := append(args, o.output)
	for i := range paths {
		if paths[i] != "" {
			if paths[i], err = filepath.Abs(paths[i]); err != nil {
				return usageError(err)
			}
		}
	}
	term := newTermReporter()
	defer term.clear()
	job := daemon.IndexJob{Walkers: o.walkers, Log: log, Progress: term.Progress}
	if o.check {
		src := ""
		if len(args) == 2 {
			src = paths[1]
		}
		c, err := job.Check(ctx, paths[0], src, o.show)
		term.clear()
		if err != nil {
			return err
		}
		fmt.Print(c.Report())
		return c.Err()
	}
	w, err := job.Write(ctx, paths[0], paths[1])
	term.clear()
	if err != nil {
		return err
	}
	fmt.Printf("cachefs: snapshot of %s written to %s: %s walked in %.2fs, %d unreadable; index %s\n",
		paths[0], paths[1], daemon.Entries(w.Stats), w.Seconds, w.Stats.Errors, indexSummary(w.Info))
	return nil
}
