package jobrun

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"syscall"

	"golang.org/x/sys/unix"
)

// Forwarded are the signals a job's command gets from its supervisor.
var Forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// CheckEnvName says whether name can be an environment variable's.
func CheckEnvName(name string) error {
	if !envName.MatchString(name) {
		return fmt.Errorf("--env %q: want an environment variable name", name)
	}
	return nil
}

// Job is a command with the mountpoint in its environment.
type Job struct {
	Argv       []string
	Mountpoint string
	Env        []string // more variables set to the mountpoint
	Stdout     *os.File
}

// Notify starts catching the Forwarded signals for Options.Signals; call
// it before deciding to run, so that none arriving after is lost.
func Notify() (sigs <-chan os.Signal, stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, Forwarded...)
	return ch, func() { signal.Stop(ch) }
}

// Run runs the job as Run does, with the process's stdin and stderr, and
// CACHEFS_MOUNTPOINT and every Env set to the mountpoint. The caller holds
// its OS thread.
func (j Job) Run(o Options) (Status, error) {
	cmd := exec.Command(j.Argv[0], j.Argv[1:]...)
	cmd.Env = append(os.Environ(), "CACHEFS_MOUNTPOINT="+j.Mountpoint)
	for _, n := range j.Env {
		cmd.Env = append(cmd.Env, n+"="+j.Mountpoint)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, j.Stdout, os.Stderr
	o.Terminal = os.Stdin
	return Run(cmd, o)
}

// Err says how a command that failed ended: nil if it succeeded.
func (s Status) Err() error {
	switch {
	case s.Code == 0:
		return nil
	case s.Signal != 0 && s.Killed:
		return fmt.Errorf("command killed by %s after its grace period", unix.SignalName(s.Signal))
	case s.Signal != 0:
		return fmt.Errorf("command killed by %s", unix.SignalName(s.Signal))
	}
	return fmt.Errorf("command exited with status %d", s.Code)
}
