// Package jobrun runs a job's command under a supervisor that must outlive
// it: `cachefs run` mounts, runs the command here, and unmounts once Run
// returns, whatever ended the command.
//
// # Process group and terminal
//
// The command runs in a process group of its own, so that signals the
// supervisor forwards reach everything the command started (a shell
// script's children, a dataloader's workers) and a SIGKILL after the grace
// period leaves none of them holding files open on the mount. When the
// supervisor owns the foreground of a terminal, the command's group gets it
// for its run: Ctrl-C then reaches the command once, from the terminal,
// instead of twice (from the terminal and forwarded), and the supervisor
// takes the terminal back afterwards.
//
// # Signals
//
// Every signal on Options.Signals is forwarded to the command's group. An
// interrupt or a termination request also starts the grace period: a
// command still running when it ends gets SIGKILL, so that the supervisor
// can unmount before the scheduler's own SIGKILL (SLURM's KillWait)
// arrives.
//
// # Exit status
//
// Status follows the shell: the command's exit code, or 128 plus the number
// of the signal that killed it.
package jobrun

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ErrStart is wrapped by Run's error when the command could not be started;
// Status then holds the shell's code for it (126, 127).
var ErrStart = errors.New("jobrun: cannot start the command")

// Options tune Run.
type Options struct {
	// Signals are forwarded to the command's process group while it runs.
	Signals <-chan os.Signal
	// Grace is how long the command may run on after a forwarded SIGINT or
	// SIGTERM before its group is killed; 0 kills at once.
	Grace time.Duration
	// Terminal, if it is the controlling terminal and the caller's group
	// holds its foreground, is handed to the command's group for its run.
	Terminal *os.File
	Log      zerolog.Logger
}

// Status is how the command ended.
type Status struct {
	Code   int            // shell convention: exit code, or 128+signal
	Signal syscall.Signal // the signal that killed it, 0 if it exited
	Killed bool           // killed by Run when the grace period ran out
}

// Run starts cmd in a new process group, forwards signals to it, and waits
// for it to end. cmd.SysProcAttr is replaced. The caller should hold its OS
// thread (runtime.LockOSThread) for as long as the command may run.
func Run(cmd *exec.Cmd, o Options) (Status, error) {
	fg := foregroundTerminal(o.Terminal)
	// SIGTERM if the supervisor dies first (the caller keeps its thread,
	// the parent the kernel watches): the command must not outlive the
	// mount it reads.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if fg {
		cmd.SysProcAttr = &syscall.SysProcAttr{Foreground: true, Ctty: int(o.Terminal.Fd()), Pdeathsig: syscall.SIGTERM}
	}
	if err := cmd.Start(); err != nil {
		return Status{Code: startCode(err)}, fmt.Errorf("%w %s: %v", ErrStart, cmd.Path, err)
	}
	if fg {
		defer takeForeground(o.Terminal)
	}
	// Wait's error says only what ProcessState says better: the command's
	// files are the caller's, so there is no copying to fail.
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	killed := supervise(cmd.Process.Pid, exited, o)
	st := status(cmd.ProcessState)
	st.Killed = killed
	return st, nil
}

// supervise forwards signals to group pgid until the command exits, and
// reports whether it had to kill the group.
func supervise(pgid int, exited <-chan struct{}, o Options) bool {
	var grace <-chan time.Time
	killed := false
	for {
		select {
		case <-exited:
			return killed
		case sig := <-o.Signals:
			s, ok := sig.(syscall.Signal)
			if !ok {
				continue
			}
			o.Log.Info().Str("signal", unix.SignalName(s)).Int("pgid", pgid).Msg("forwarding signal to the command")
			_ = unix.Kill(-pgid, s)
			if grace == nil && (s == syscall.SIGINT || s == syscall.SIGTERM) {
				t := time.NewTimer(o.Grace)
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			o.Log.Warn().Dur("grace", o.Grace).Int("pgid", pgid).Msg("the command outlived its grace period: killing it")
			_ = unix.Kill(-pgid, syscall.SIGKILL)
			killed = true
			grace = nil
		}
	}
}

func status(ps *os.ProcessState) Status {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return Status{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
	}
	return Status{Code: ps.ExitCode()}
}

// startCode is the shell's status for a command that could not run: 127
// when it does not exist, 126 when it exists but cannot be executed.
func startCode(err error) int {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		return 127
	}
	return 126
}

// foregroundTerminal reports whether t is a terminal whose foreground is
// the caller's process group, the only case where handing it over is right.
func foregroundTerminal(t *os.File) bool {
	if t == nil {
		return false
	}
	fg, err := unix.IoctlGetInt(int(t.Fd()), unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

// takeForeground gives the terminal's foreground back to the caller's
// group. The caller is in the background until then, where the kernel
// answers TIOCSPGRP with SIGTTOU unless it is ignored.
func takeForeground(t *os.File) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	_ = unix.IoctlSetPointerInt(int(t.Fd()), unix.TIOCSPGRP, unix.Getpgrp())
}
