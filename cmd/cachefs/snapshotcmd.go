package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
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
		Long: `Walk SOURCE once, in parallel, exactly as 'cachefs mount' does, and write the
snapshot to the file INDEX. Every node of a job can then mount with
'cachefs mount SOURCE MOUNTPOINT --index INDEX', which loads INDEX and sends no
metadata call to SOURCE beyond one stat of its root, checking that it is the
directory the index was made from. INDEX is written under a temporary name
beside it and renamed into place, so a mount never reads a partial index. It
records the source path, the host, the time and duration of the walk and the
number of entries the walk could not read.

The walk always records POSIX ACLs (one more metadata call per entry, two per
directory), even though a mount without --allow-other does not need them: an
index is one walk for many nodes, and any of them may mount it with
--allow-other, which refuses an index without ACLs.

With --check, load INDEX, walk its source again (the path recorded in the
index, or SOURCE when given, e.g. where a node mounts it elsewhere) and report
the entries added, removed and changed since the index was made: type, size,
mtime, permission bits, owner, inode, link count, symlink target. A mount
never serves mixed bytes from a stale index (each file's inode, size and mtime
are checked when its contents are first fetched), but files changed since
the index fail with EIO and new files are not shown: rebuild when --check
reports differences that matter to the job. With --check the exit status is
0 when the index matches the source, 12 when it differs, and 11 when the index
cannot be used (a mount would refuse it too).
` + exitStatusHelp,
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
		return printCheck(paths[0], c)
	}
	w, err := job.Write(ctx, paths[0], paths[1])
	term.clear()
	if err != nil {
		return err
	}
	fmt.Printf("cachefs: snapshot of %s written to %s: %s walked in %.2fs, %d unreadable; index %s\n",
		paths[0], paths[1], entries(w.Stats), w.Seconds, w.Stats.Errors, indexSummary(w.Info))
	return nil
}

// printCheck prints what --check found, and fails if the index differs.
func printCheck(idx string, c daemon.Checked) error {
	info, d, src := c.Info, c.Diff, c.Source
	fmt.Printf("cachefs: index %s (walked %s ago on %s, %s entries, %d unreadable) vs %s now (%s entries walked in %.2fs, %d unreadable): %s added, %s removed, %s changed\n",
		idx, daemon.RoundAge(info.Age(time.Now())), orUnknown(info.Host), humanize.Comma(info.Stats.Entries), info.Stats.Errors,
		src, humanize.Comma(c.Now.Entries), c.Seconds, c.Now.Errors,
		humanize.Comma(d.Added), humanize.Comma(d.Removed), humanize.Comma(d.Changed))
	printDiff(d)
	if d.Same() {
		return nil
	}
	return withCode(exitDiffers, fmt.Errorf("index %s differs from %s (%d added, %d removed, %d changed); rebuild with 'cachefs snapshot %s -o %s'",
		idx, src, d.Added, d.Removed, d.Changed, src, idx))
}

// printDiff lists the differences --show lets through, and how many more
// there are of each kind.
func printDiff(d snapshot.DiffResult) {
	list := func(kind string, es []snapshot.DiffEntry) int64 {
		var n int64
		for _, e := range es {
			line := fmt.Sprintf("%-8s %s", kind, showPath(e.Path))
			switch {
			case e.What != 0:
				line += " (" + e.What.String() + ")"
			case e.Entries > 1:
				line += fmt.Sprintf(" (and %s entries below)", humanize.Comma(e.Entries-1))
			}
			fmt.Println(line)
			n += e.Entries
		}
		return n
	}
	more := func(kind string, listed, total int64) {
		if total > listed {
			fmt.Printf("%-8s ... %s more entries (--show to list more)\n", kind, humanize.Comma(total-listed))
		}
	}
	more("added", list("added", d.AddedPaths), d.Added)
	more("removed", list("removed", d.RemovedPaths), d.Removed)
	more("changed", list("changed", d.ChangedPaths), d.Changed)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown host"
	}
	return s
}

// showPath prints a path as it is, unless it holds bytes a terminal would
// mangle; the root is ".".
func showPath(p string) string {
	if p == "" {
		return "."
	}
	if !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(p)
	}
	return p
}
