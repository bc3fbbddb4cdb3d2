package daemon

import (
	"context"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Signals decides what the signals cachefs handles do. SIGINT and
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
type Signals struct {
	mu     sync.Mutex
	daemon bool
	log    zerolog.Logger
	status func() string // nil until the daemon serves
}

// Route applies the policy until stop is called.
func (p *Signals) Route(cancel context.CancelFunc) (stop func()) {
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

func (p *Signals) handle(sig os.Signal, cancel context.CancelFunc) {
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

// Serving switches the process to the daemon's policy; log receives the
// lines signals cause, and status, if not nil, makes SIGUSR1's line.
func (p *Signals) Serving(log zerolog.Logger, status func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.daemon {
		signal.Ignore(syscall.SIGPIPE)
	}
	p.daemon, p.log, p.status = true, log, status
}
