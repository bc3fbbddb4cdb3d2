package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/snapshot"
)

// readyMsg is one line on the readiness pipe from daemon to launcher.
type readyMsg struct {
	Progress *snapshot.Counts `json:"progress,omitempty"`
	Ready    *Ready           `json:"ready,omitempty"`
	Error    string           `json:"error,omitempty"`
	Kind     string           `json:"kind,omitempty"` // the error's kind, by its name
}

// kinds are the error kinds a failure on the pipe may carry.
var kinds = []error{ErrSource, ErrMountpoint, ErrMounted, ErrMountFailed, ErrCacheDir, ErrIndex, ErrUsage, ErrPeers, ErrInterrupted}

// PipeReporter is the daemon's end of the readiness pipe.
type PipeReporter struct {
	enc  *json.Encoder
	sent bool
}

// NewPipeReporter reports on w, the pipe its launcher reads.
func NewPipeReporter(w io.Writer) *PipeReporter { return &PipeReporter{enc: json.NewEncoder(w)} }

// send writes one message; a launcher that went (Ctrl-C) reads none, and
// the daemon is then being stopped anyway.
func (p *PipeReporter) send(m readyMsg) { _ = p.enc.Encode(m) }

func (p *PipeReporter) Progress(c snapshot.Counts) { p.send(readyMsg{Progress: &c}) }

func (p *PipeReporter) Ready(r Ready) {
	p.send(readyMsg{Ready: &r})
	p.sent = true
}

// Fail tells the launcher why the mount did not come, unless it serves.
func (p *PipeReporter) Fail(err error) {
	if err == nil || p.sent {
		return
	}
	m := readyMsg{Error: err.Error()}
	if k := KindOf(err); k != nil {
		m.Kind = k.Error()
	}
	p.send(m)
}

// Launch starts a daemon in the background and follows it until it serves.
type Launch struct {
	// Args is the daemon's command line after the executable; it reports
	// on descriptor 3.
	Args       []string
	Mountpoint string
	Runtime    control.RuntimeDir
	// DeathSignal, if not zero, is sent to the daemon when the thread
	// that launched it dies.
	DeathSignal syscall.Signal
}

// Start starts the daemon in a new session, this executable again, and
// relays its progress to rep until the mount serves or the daemon fails.
func (l Launch) Start(ctx context.Context, rep Reporter) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command(exe, l.Args...)
	// Its own session, so the job's terminal and process group signals do
	// not reach it; cwd "/" so it pins no directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: l.DeathSignal}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w}
	mountsBefore, _ := mounttable.CountAt(l.Mountpoint)
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("starting the daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return l.relay(ctx, r, rep, &launched{p: cmd.Process, exited: exited, mountsBefore: mountsBefore})
}

// launched is a daemon on its way to serving.
type launched struct {
	p            *os.Process
	exited       <-chan error
	mountsBefore int
}

// relay passes on the daemon's progress until it reports readiness or
// failure, exits, or the launch is interrupted.
func (l Launch) relay(ctx context.Context, r io.Reader, rep Reporter, d *launched) error {
	msgs := make(chan readyMsg)
	go func() {
		defer close(msgs)
		dec := json.NewDecoder(bufio.NewReader(r))
		for {
			var m readyMsg
			if dec.Decode(&m) != nil {
				return
			}
			msgs <- m
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return l.abort(d)
		case m, ok := <-msgs:
			switch {
			case !ok:
				_, werr := d.wait(killWait)
				return fail(ErrMountFailed, fmt.Errorf("the daemon exited before the mount was ready (%v); see its log in the cache directory", werr))
			case m.Progress != nil:
				rep.Progress(*m.Progress)
			case m.Ready != nil:
				rep.Ready(*m.Ready)
				return nil
			case m.Error != "":
				// The daemon exits after it reports; a thread stuck in the
				// kernel can delay that, but not the answer.
				_, _ = d.wait(killWait)
				if k := kindNamed(m.Kind); k != nil {
					return fail(k, errors.New(m.Error))
				}
				return errors.New(m.Error)
			}
		}
	}
}

func kindNamed(name string) error {
	for _, k := range kinds {
		if k.Error() == name {
			return k
		}
	}
	return nil
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

// abort stops the daemon of an interrupted launch, by force if it does not
// stop at once, and detaches a mount it made on the way.
func (l Launch) abort(d *launched) error {
	mnt := l.Mountpoint
	_ = d.p.Signal(syscall.SIGTERM) // it may be gone already; the wait tells
	stopped, _ := d.wait(stopGrace)
	if !stopped {
		_ = d.p.Kill()
		stopped, _ = d.wait(killWait)
	}
	if n, err := mounttable.CountAt(mnt); err == nil && n > d.mountsBefore {
		if me, _, _ := mounttable.Find(mnt); me.FSType == mounttable.FSType {
			if err := mounttable.Detach(mnt, true); err != nil {
				return fail(ErrInterrupted, fmt.Errorf("interrupted; the mount at %s could not be detached: %w", mnt, err))
			}
		}
	}
	if rec, _ := l.Runtime.Read(mnt); rec != nil && rec.Pid == d.p.Pid {
		_ = os.Remove(l.Runtime.RecordPath(mnt)) // a record left is harmless: readers check its daemon runs
	}
	if !stopped {
		return fail(ErrInterrupted, fmt.Errorf("interrupted; nothing mounted; %s and has not exited yet", mounttable.WhyNoAnswer(d.p.Pid)))
	}
	return fail(ErrInterrupted, errors.New("interrupted; nothing mounted"))
}

// wait waits at most t for the daemon to exit, and returns whether it did
// and its exit status.
func (d *launched) wait(t time.Duration) (bool, error) {
	timer := time.NewTimer(t)
	defer timer.Stop()
	select {
	case err := <-d.exited:
		return true, err
	case <-timer.C:
		return false, nil
	}
}
