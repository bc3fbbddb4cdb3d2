package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
)

// daemonMsg is one line on the readiness pipe from daemon to launcher.
type daemonMsg struct {
	Progress *snapshot.Counts `json:"progress,omitempty"`
	Ready    *daemon.Ready    `json:"ready,omitempty"`
	Error    string           `json:"error,omitempty"`
	Code     int              `json:"code,omitempty"`
}

// launch starts the daemon in a new session, with the flags the user set,
// and relays its progress until the mount serves or the daemon fails.
// A nonzero deathSignal is sent to the daemon when the thread that
// launched it dies.
func launch(ctx context.Context, c daemon.Config, flags []string, deathSignal syscall.Signal) error {
	exe, err := os.Executable()
	if err != nil {
		return withCode(exitInternal, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return withCode(exitInternal, err)
	}
	defer r.Close()
	args := append([]string{"mount", c.Source, c.Mountpoint, "--foreground", "--ready-fd=3"}, flags...)
	cmd := exec.Command(exe, args...)
	// Its own session, so the job's terminal and process group signals do
	// not reach it; cwd "/" so it pins no directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: deathSignal}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w}
	mountsBefore, _ := mounttable.CountAt(c.Mountpoint)
	err = cmd.Start()
	w.Close()
	if err != nil {
		return withCode(exitInternal, fmt.Errorf("starting the daemon: %w", err))
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return relay(ctx, r, cmd.Process, exited, c, mountsBefore)
}

// relay shows the daemon's progress until it reports readiness or failure,
// exits, or the launch is interrupted.
func relay(ctx context.Context, r *os.File, p *os.Process, exited <-chan error, c daemon.Config, mountsBefore int) error {
	msgs := make(chan daemonMsg)
	go func() {
		defer close(msgs)
		dec := json.NewDecoder(bufio.NewReader(r))
		for {
			var m daemonMsg
			if dec.Decode(&m) != nil {
				return
			}
			msgs <- m
		}
	}()
	term := newTermReporter()
	defer term.clear()
	for {
		select {
		case <-ctx.Done():
			term.clear()
			return abortLaunch(p, exited, c, mountsBefore)
		case m, ok := <-msgs:
			switch {
			case !ok:
				_, werr := waitExit(exited, killWait)
				return withCode(exitMountFailed, fmt.Errorf("the daemon exited before the mount was ready (%v); see its log in the cache directory", werr))
			case m.Progress != nil:
				term.Progress(*m.Progress)
			case m.Ready != nil:
				term.Ready(*m.Ready)
				return nil
			case m.Error != "":
				term.clear()
				// The daemon exits after it reports; a thread stuck in the
				// kernel can delay that, but not the answer.
				_, _ = waitExit(exited, killWait)
				return withCode(m.Code, errors.New(m.Error))
			}
		}
	}
}

// stopGrace is how long an interrupted launch lets the daemon stop on
// SIGTERM; killWait, how long it then waits for SIGKILL to take. A daemon
// stuck in a call to a hung source never sees SIGTERM (and would retry the
// call if it did), so Ctrl-C must not depend on it. Killing is safe: the
// cache on disk is consistent at every instruction.
const (
	stopGrace = 500 * time.Millisecond
	killWait  = 2 * time.Second
)

// abortLaunch stops the daemon of an interrupted launch, by force if it
// does not stop at once, and detaches a mount it made on the way.
func abortLaunch(p *os.Process, exited <-chan error, c daemon.Config, mountsBefore int) error {
	mnt := c.Mountpoint
	_ = p.Signal(syscall.SIGTERM) // it may be gone already; the wait tells
	stopped, _ := waitExit(exited, stopGrace)
	if !stopped {
		_ = p.Kill()
		stopped, _ = waitExit(exited, killWait)
	}
	if n, err := mounttable.CountAt(mnt); err == nil && n > mountsBefore {
		if me, _, _ := mounttable.Find(mnt); me.FSType == mounttable.FSType {
			if err := mounttable.Detach(mnt, true); err != nil {
				return withCode(exitInterrupted, fmt.Errorf("interrupted; the mount at %s could not be detached: %w", mnt, err))
			}
		}
	}
	if rec, _ := c.Runtime.Read(mnt); rec != nil && rec.Pid == p.Pid {
		removeRecord(mnt)
	}
	if !stopped {
		return withCode(exitInterrupted, fmt.Errorf("interrupted; nothing mounted; %s and has not exited yet", mounttable.WhyNoAnswer(p.Pid)))
	}
	return withCode(exitInterrupted, errors.New("interrupted; nothing mounted"))
}

// waitExit waits at most d for the daemon to exit, and returns whether it
// did and its exit status.
func waitExit(exited <-chan error, d time.Duration) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-exited:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// entries is the size of a snapshot as summaries give it.
func entries(s snapshot.Stats) string {
	return fmt.Sprintf("%s entries (%s dirs, %s files, %s)",
		humanize.Comma(s.Entries), humanize.Comma(s.Dirs), humanize.Comma(s.Files), humanize.IBytes(uint64(s.Bytes)))
}

// summary is the line mount prints once the mount serves.
func summary(r *daemon.Ready) string {
	return fmt.Sprintf("cachefs: serving %s at %s: %s snapshotted in %.2fs, %d unreadable; cache %s; log %s; daemon pid %d",
		r.Source, r.Mountpoint, entries(r.Stats), r.Seconds, r.Stats.Errors, r.CacheDir, r.LogFile, r.Pid) + writableSuffix(r.Writable)
}

func writableSuffix(w string) string {
	if w == "" {
		return ""
	}
	return "; " + w
}

// pipeReporter sends the daemon's progress and readiness to its launcher.
type pipeReporter struct {
	enc  *json.Encoder
	sent bool
}

// send writes one message; a launcher that went (Ctrl-C) reads none, and
// the daemon is then being stopped anyway.
func (p *pipeReporter) send(m daemonMsg) { _ = p.enc.Encode(m) }

func (p *pipeReporter) Progress(c snapshot.Counts) { p.send(daemonMsg{Progress: &c}) }

func (p *pipeReporter) Ready(r daemon.Ready) {
	p.send(daemonMsg{Ready: &r})
	p.sent = true
}

// termReporter draws a one-line progress counter when stderr is a terminal
// and stays silent otherwise, so batch logs get only the summary.
type termReporter struct {
	tty   bool
	drawn bool
}

func newTermReporter() *termReporter {
	return &termReporter{tty: isatty.IsTerminal(os.Stderr.Fd())}
}

func (t *termReporter) Progress(m snapshot.Counts) {
	if !t.tty {
		return
	}
	fmt.Fprintf(os.Stderr, "\r\033[Kwalking source: %s entries, %s dirs, %s, %d unreadable",
		humanize.Comma(m.Entries), humanize.Comma(m.Dirs), humanize.IBytes(uint64(m.Bytes)), m.Errors)
	t.drawn = true
}

func (t *termReporter) clear() {
	if t.drawn {
		fmt.Fprint(os.Stderr, "\r\033[K")
		t.drawn = false
	}
}

func (t *termReporter) Ready(r daemon.Ready) {
	t.clear()
	fmt.Println(summary(&r))
}
