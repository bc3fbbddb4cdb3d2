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
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cachefs: %v\n", err)
	}
	os.Exit(exitCode(err))
}

const exitStatusHelp = `
EXIT STATUS
  0   success
  1   internal error
  2   usage error: unknown flag, wrong arguments
  3   source error: missing, not a directory, unreadable
  4   mountpoint error: not a directory, not empty, cannot be created, or
      it would hide the source or the cache directory
  5   mountpoint already mounted
  6   mount failed: FUSE unavailable, permission denied, daemon died
  7   not mounted
  8   busy: files are open on the mount (unmount --lazy detaches)
  9   cache directory error: unusable, in use, or not yours alone (owned
      by another user, a symlink, or open to others); the same for the
      runtime directory and the log file
  10  timed out waiting for the daemon
  11  snapshot index error: cannot be read or written, corrupt, wrong
      version, too old, or made from another source
  12  snapshot --check: the index differs from the source
  130 interrupted
`

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	cmd := &cobra.Command{
		Use:   "cachefs",
		Short: "Read-through caching FUSE filesystem for HPC jobs",
		Long: `cachefs serves a tree of a shared filesystem (Lustre, GPFS, NFS) through a
FUSE mount on a compute node. Metadata is snapshotted once, by a parallel
walk, when the mount starts; after that every stat, lookup, listing and
readlink is answered from memory and never reaches the shared metadata
server. File contents are copied in blocks to node-local disk the first time
they are read, and served from there afterwards.` + "\n" + exitStatusHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.AddFlags(cmd)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError(fmt.Errorf("%w (see '%s --help')", err, c.CommandPath()))
	})
	cmd.AddCommand(newMountCommand(g), newUnmountCommand(g), newStatusCommand(g), newWarmCommand(g), newSnapshotCommand(g))
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
