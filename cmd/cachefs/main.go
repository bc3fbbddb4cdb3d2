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
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	stop := signals.route(cancel)
	err := newRootCommand().ExecuteContext(ctx)
	stop()
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cachefs: %v\n", err)
	}
	os.Exit(exitCode(err))
}

// signals is the process's one signal policy.
var signals signalPolicy

// signalPolicy decides what the signals cachefs handles do. SIGINT and
// SIGTERM cancel the command; a daemon then unmounts, lazily if files are
// open. SIGHUP cancels a command like Ctrl-C, as a terminal that goes away
// expects. A daemon, once it says so (serving), must outlive whatever a
// job environment sends short of SIGTERM and SIGKILL (SLURM's --signal,
// a stray kill -HUP), or readers get ENOTCONN and a dead mount is left:
// it answers SIGUSR1 with a status line in its log, logs SIGHUP and
// SIGUSR2 and carries on, and ignores SIGPIPE so that a write to a closed
// stdout or stderr fails instead of killing it. The Go runtime already
// ignores SIGALRM, SIGXCPU, SIGXFSZ, SIGVTALRM, SIGIO and SIGPWR that no
// one asked for.
type signalPolicy struct {
	mu     sync.Mutex
	daemon bool
	log    zerolog.Logger
	status func() string // nil until the daemon serves
}

// route applies the policy until stop is called.
func (p *signalPolicy) route(cancel context.CancelFunc) (stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				p.handle(sig, cancel)
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

func (p *signalPolicy) handle(sig os.Signal, cancel context.CancelFunc) {
	p.mu.Lock()
	daemon, log, status := p.daemon, p.log, p.status
	p.mu.Unlock()
	switch {
	case sig == os.Interrupt || sig == syscall.SIGTERM:
		cancel()
	case !daemon && sig == syscall.SIGHUP:
		cancel()
	case daemon && sig == syscall.SIGUSR1 && status != nil:
		log.Info().Str("signal", "SIGUSR1").Msg("status: " + status())
	case daemon:
		name := sig.String()
		if s, ok := sig.(syscall.Signal); ok {
			name = unix.SignalName(s)
		}
		log.Info().Str("signal", name).Msg("signal ignored; the mount keeps serving (SIGTERM unmounts)")
	}
}

// serving switches the process to the daemon's policy; log receives the
// lines signals cause, and status, if not nil, makes SIGUSR1's line.
func (p *signalPolicy) serving(log zerolog.Logger, status func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.daemon {
		signal.Ignore(syscall.SIGPIPE)
	}
	p.daemon, p.log, p.status = true, log, status
}

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
