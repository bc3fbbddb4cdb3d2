// Command cachefs mounts a read-through caching view of a shared filesystem
// tree for HPC jobs: metadata is snapshotted once at mount, then served from
// memory, so the job's stats, lookups and listings never reach the shared
// metadata server again.
//
// This package is the only one that reads flags and the environment and
// builds the zerolog logger; the libraries receive what they need.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/cachefs/cachefs/daemon"
	"github.com/spf13/cobra"
)

// signals is the process's one signal policy.
var signals daemon.Signals

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	stop := signals.Route(cancel)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cachefs: %v\n", err)
	}
	os.Exit(exitCode(err))
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	cmd := &cobra.Command{
		Use:           "cachefs",
		Short:         "Read-through caching FUSE filesystem for HPC jobs",
		Long:          help("cachefs", "\n"+exitStatusHelp),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.AddFlags(cmd)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	cmd.AddCommand(newMountCommand(g), newUnmountCommand(g), newStatusCommand(g), newWarmCommand(g), newSnapshotCommand(g), newPushCommand(g), newRunCommand(g))
	return cmd
}

// exactArgs is cobra.ExactArgs with the usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageError(fmt.Errorf("%s: %w (see '%s --help')", cmd.Name(), err, cmd.CommandPath()))
		}
		return nil
	}
}
