package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
)

type statusOptions struct {
	json bool
}

func (o *statusOptions) AddFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.json, "json", false, "print JSON: an object for one MOUNTPOINT, an array otherwise")
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	o := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [MOUNTPOINT]",
		Short: "Show what a cachefs mount is doing (all of this user's mounts by default)",
		Long: `Show source, mountpoint, cache directory, snapshot size, cache usage and budget,
hits and misses, bytes read from the source and served, prefetch queue,
passthrough and uptime, as a table or, with --json, for scripts.` + "\n" + exitStatusHelp,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usageError(fmt.Errorf("status: at most one MOUNTPOINT (see 'cachefs status --help')"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

func runStatus(ctx context.Context, g *globalOptions, o *statusOptions, args []string) error {
	if _, err := g.logger(os.Stderr); err != nil {
		return err
	}
	var recs []*control.Record
	if len(args) == 1 {
		mnt, err := mounttable.Resolve(args[0])
		if err != nil {
			return usageError(err)
		}
		rec, err := control.Live(mnt, readRecord)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	} else {
		recs = runtimeDir().AllLive(func(err error) { _ = warnForeign(err) })
	}
	var replies []*control.StatusReply
	for _, rec := range recs {
		r, err := control.StatusOf(ctx, rec)
		if err != nil {
			return err
		}
		replies = append(replies, r)
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if len(args) == 1 {
			return enc.Encode(replies[0])
		}
		if replies == nil {
			replies = []*control.StatusReply{}
		}
		return enc.Encode(replies)
	}
	if len(replies) == 0 {
		fmt.Println("cachefs: no mounts")
		return nil
	}
	for i, r := range replies {
		if i > 0 {
			fmt.Println()
		}
		printStatus(r)
	}
	return nil
}

func printStatus(r *control.StatusReply) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	c := r.Cache
	s := r.Snapshot
	fmt.Fprintf(tw, "mountpoint\t%s\n", r.Mountpoint)
	fmt.Fprintf(tw, "source\t%s\n", r.Source)
	fmt.Fprintf(tw, "cache dir\t%s\n", r.CacheDir)
	fmt.Fprintf(tw, "daemon\tpid %d, up %s, log %s\n", r.Pid, time.Duration(r.UptimeSeconds*1e9).Round(time.Second), r.LogFile)
	fmt.Fprintf(tw, "snapshot\t%s entries (%s dirs, %s files), %s, %d unreadable\n",
		humanize.Comma(s.Entries), humanize.Comma(s.Dirs), humanize.Comma(s.Files), humanize.IBytes(uint64(s.Bytes)), s.Errors)
	budget := "no limit"
	if c.Budget > 0 {
		budget = humanize.IBytes(uint64(c.Budget))
	}
	fmt.Fprintf(tw, "cache\t%s used of %s; %s block hits, %s misses; %d evictions\n",
		humanize.IBytes(uint64(c.Usage)), budget, humanize.Comma(c.Hits), humanize.Comma(c.Misses), c.Evictions)
	if c.Verified > 0 || c.Corrupt > 0 {
		fmt.Fprintf(tw, "checked\t%s blocks read back against their checksums, %s damaged and fetched again\n",
			humanize.Comma(c.Verified), humanize.Comma(c.Corrupt))
	}
	fmt.Fprintf(tw, "traffic\t%s from the source, %s served in %s opens, %d errors\n",
		humanize.IBytes(uint64(c.BytesFromSource)), humanize.IBytes(uint64(r.BytesServed)), humanize.Comma(r.Opens), r.Errors)
	if p := r.Prefetch; p != nil {
		fmt.Fprintf(tw, "prefetch\t%d queued, %d running (limit %d of %d), %s files done (%s)\n", p.Queued, p.Running, p.InFlight, p.MaxInFlight, humanize.Comma(p.Done), humanize.IBytes(uint64(p.Bytes)))
		if w := p.Warm; w != nil {
			fmt.Fprintf(tw, "warm\t%s\n", warmLine(w))
		}
	} else {
		fmt.Fprintf(tw, "prefetch\toff\n")
	}
	pt := "off"
	if r.Passthrough {
		pt = fmt.Sprintf("on (%s opens)", humanize.Comma(c.PassthroughOffered))
	}
	fmt.Fprintf(tw, "passthrough\t%s\n", pt)
	if r.OpenMode != "" {
		fmt.Fprintf(tw, "opens\t%s\n", r.OpenMode)
	}
	if w := r.Writable; w != nil {
		fmt.Fprintf(tw, "writable\t%s changed files (%s) not pushed yet, in %s\n", humanize.Comma(w.Files), humanize.IBytes(uint64(w.Bytes)), w.Upper)
	}
	printPeers(tw, r.Peers)
	tw.Flush()
}
