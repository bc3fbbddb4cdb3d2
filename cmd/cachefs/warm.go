package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
)

type warmOptions struct {
	workers int
}

func (o *warmOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().IntVar(&o.workers, "workers", 8, "files fetched at once")
}

func newWarmCommand(g *globalOptions) *cobra.Command {
	o := &warmOptions{}
	cmd := &cobra.Command{
		Use:   "warm MOUNTPOINT [PATH...]",
		Short: "Fetch subtrees of a mount into its cache (everything by default)",
		Long:  help("warm", "\n"+exitStatusHelp),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError(fmt.Errorf("warm: MOUNTPOINT is missing (see 'cachefs warm --help')"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runWarm(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runWarm(ctx context.Context, g *globalOptions, o *warmOptions, args []string) error {
	if _, err := g.logger(os.Stderr); err != nil {
		return err
	}
	mnt, err := filepath.Abs(args[0])
	if err != nil {
		return usageError(err)
	}
	paths, err := control.WarmPaths(mnt, args[1:])
	if err != nil {
		return usageError(err)
	}
	rec, err := control.Live(mnt, readRecord)
	if err != nil {
		return err
	}
	start := time.Now()
	bar := &warmBar{}
	last, err := control.WarmAll(ctx, rec, control.WarmRequest{Paths: paths, Workers: o.workers}, bar.show)
	bar.end(err)
	if err != nil && !errors.Is(err, control.ErrNotCached) {
		return err
	}
	fmt.Printf("cachefs: warmed %s: %s of %s files cached (%s), %s fetched from the source in %.1fs\n",
		mnt, humanize.Comma(last.FilesCached), humanize.Comma(last.FilesTotal), humanize.IBytes(uint64(last.BytesTotal)),
		humanize.IBytes(uint64(last.Fetched)), time.Since(start).Seconds())
	return err
}

// warmBar shows a warm's progress as a bar on a terminal.
type warmBar struct{ bar *progressbar.ProgressBar }

func (b *warmBar) show(m control.WarmMsg) {
	if b.bar == nil && !m.Done && isatty.IsTerminal(os.Stderr.Fd()) {
		b.bar = progressbar.NewOptions64(m.BytesTotal, progressbar.OptionSetWriter(os.Stderr),
			progressbar.OptionShowBytes(true), progressbar.OptionShowCount(),
			progressbar.OptionSetDescription("warming"), progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	if b.bar != nil {
		b.bar.Describe(fmt.Sprintf("warming %s/%s files", humanize.Comma(m.FilesDone), humanize.Comma(m.FilesTotal)))
		_ = b.bar.Set64(m.BytesDone) // a terminal that went away loses only the bar
	}
}

func (b *warmBar) end(err error) {
	switch {
	case b.bar == nil:
	case err != nil && !errors.Is(err, control.ErrNotCached) && !errors.Is(err, control.ErrPath):
		_ = b.bar.Exit()
	default:
		_ = b.bar.Finish()
	}
}
