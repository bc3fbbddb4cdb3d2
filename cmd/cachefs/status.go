package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
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
		Long:  help("status", "\n"+exitStatusHelp),
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
	replies, err := control.StatusAll(ctx, recs)
	if err != nil {
		return err
	}
	if o.json {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if len(args) == 1 {
			return enc.Encode(replies[0])
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
		fmt.Print(r.Table())
	}
	return nil
}
