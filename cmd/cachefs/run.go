package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/jobrun"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type runOptions struct {
	mount          mountOptions
	env            []string
	grace          time.Duration
	unmountTimeout time.Duration
	push           bool
	pushOpt        pushOptions
}

func (o *runOptions) AddFlags(cmd *cobra.Command) {
	o.mount.AddFlags(cmd)
	f := cmd.Flags()
	if err := f.MarkHidden("foreground"); err != nil {
		panic(err)
	}
	own := pflag.NewFlagSet("run", pflag.ContinueOnError)
	own.StringArrayVar(&o.env, "env", nil, "also set this environment variable of COMMAND to the mountpoint (EEGDASH_CACHE_DIR, HF_HOME, ...); repeatable")
	own.DurationVar(&o.grace, "grace", 25*time.Second, "after forwarding SIGINT or SIGTERM, how long COMMAND may run on before it is killed and the mount goes; keep it under the scheduler's KillWait (SLURM: 30s)")
	own.BoolVar(&o.push, "push", false, "mount --writable and, once COMMAND has ended, push its changes to SOURCE (see 'cachefs push') before unmounting; changes that are not pushed (conflicts, exit 13, or a failed push) are kept in the cache directory")
	o.pushOpt.AddFlags(own)
	own.DurationVar(&o.unmountTimeout, "unmount-timeout", 60*time.Second, "the most the final unmount takes, the wait for the daemon included")
	// The daemon is started with the mount's flags the user set; these
	// are for this process only.
	own.VisitAll(func(fl *pflag.Flag) { fl.Annotations = map[string][]string{launcherOnly: {"true"}} })
	f.AddFlagSet(own)
}

func newRunCommand(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run SOURCE MOUNTPOINT [flags] -- COMMAND [ARG...]",
		Short: "Mount SOURCE at MOUNTPOINT, run COMMAND, unmount, and exit with COMMAND's status",
		Long:  help("run", "\n"+strings.TrimPrefix(exitStatusHelp, "\nEXIT STATUS\n")),
		Args:  runArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRun(cmd.Context(), g, o, cmd.Flags(), args[:2], args[2:])
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// runArgs wants SOURCE MOUNTPOINT before "--" and a command after it.
func runArgs(cmd *cobra.Command, args []string) error {
	if dash := cmd.ArgsLenAtDash(); dash != 2 || len(args) < 3 {
		return usageError(fmt.Errorf("run: want SOURCE MOUNTPOINT -- COMMAND (see 'cachefs run --help')"))
	}
	return nil
}

func runRun(ctx context.Context, g *globalOptions, o *runOptions, flags *pflag.FlagSet, paths, command []string) error {
	for _, n := range o.env {
		if err := jobrun.CheckEnvName(n); err != nil {
			return usageError(err)
		}
	}
	if o.mount.foreground || o.grace < 0 || o.unmountTimeout <= 0 {
		return usageError(errors.New("run: --foreground does not apply; --grace and --unmount-timeout want positive durations"))
	}
	if o.push {
		// Set as the user would have, so that the daemon is told too.
		if err := flags.Set("writable", "true"); err != nil {
			return withCode(exitInternal, err)
		}
	}
	c, err := o.mount.parse(ctx, g, paths)
	if err != nil {
		return err
	}
	// The daemon gets SIGTERM when the thread that started it dies, so this
	// goroutine keeps its thread for the life of the process: a killed
	// cachefs run then takes its mount with it.
	runtime.LockOSThread()
	stdout := os.Stdout
	os.Stdout = os.Stderr
	defer func() { os.Stdout = stdout }()
	term := newTermReporter()
	term.json, term.noLine = o.mount.json, true
	if err := launch(ctx, c, forwardedFlags(flags), syscall.SIGTERM, term); err != nil {
		return err
	}
	rec, _ := readRecord(c.Mountpoint)
	sigs, stop := jobrun.Notify()
	defer stop()
	st := jobrun.Status{Code: exitInterrupted}
	runErr := withCode(exitInterrupted, errors.New("interrupted once mounted; the command did not run"))
	// A signal that came between the mount and Notify ended the job
	// already: the command does not start.
	if ctx.Err() == nil {
		job := jobrun.Job{Argv: command, Mountpoint: c.Mountpoint, Env: o.env, Stdout: stdout}
		st, runErr = job.Run(jobrun.Options{Signals: sigs, Grace: o.grace, Log: c.Logger})
	}
	pushErr := beforeUnmount(ctx, g, o, rec)
	u, umErr := (&unmountOptions{timeout: o.unmountTimeout, keep: o.push && pushErr != nil}).unmount(g, c.Mountpoint)
	if umErr == nil {
		u.Pushed = o.push && pushErr == nil
		umErr = u.AfterJob(rec)
	}
	return runResult(st, runErr, pushErr, umErr)
}

// beforeUnmount pushes a writable mount's changes to the source (each
// file atomically, none changed there since the snapshot overwritten) once
// COMMAND has ended and before the unmount discards the view. It works
// from the node-local copy of the changes that the record names, not
// through the mount: a scheduler's SIGTERM to the whole step may have
// unmounted it already. That SIGTERM, which cancels ctx, does not cancel
// the push: the changes are the job's results, and a push the scheduler
// kills outright leaves only complete files in SOURCE.
func beforeUnmount(ctx context.Context, g *globalOptions, o *runOptions, rec *control.Record) error {
	if !o.push {
		return nil
	}
	if rec == nil {
		return withCode(exitPush, errors.New("push: no record of the mount's daemon, so no record of its changes"))
	}
	return pushRecord(context.WithoutCancel(ctx), g, &o.pushOpt, rec)
}

// runResult maps the job's outcome to one error carrying the exit status.
func runResult(st jobrun.Status, runErr, pushErr, umErr error) error {
	switch {
	case runErr != nil:
		return withCode(st.Code, runErr)
	case st.Code == 0 && pushErr != nil:
		return pushErr
	case st.Code == 0:
		return umErr
	}
	if pushErr != nil || umErr != nil {
		fmt.Fprintf(os.Stderr, "cachefs: after the command: %v\n", errors.Join(pushErr, umErr))
	}
	return &exitError{code: st.Code, err: st.Err()}
}
