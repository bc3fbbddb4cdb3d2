package jobrun

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func run(t *testing.T, sigs chan os.Signal, grace time.Duration, script string) Status {
	t.Helper()
	st, err := Run(exec.Command("sh", "-c", script), Options{Signals: sigs, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestStatusFollowsTheShell(t *testing.T) {
	if st := run(t, nil, 0, "exit 4"); st.Code != 4 || st.Signal != 0 {
		t.Errorf("exit 4: %+v", st)
	}
	if st := run(t, nil, 0, "kill -TERM $$"); st.Code != 128+15 || st.Signal != syscall.SIGTERM {
		t.Errorf("killed by SIGTERM: %+v", st)
	}
	st, err := Run(exec.Command("/nonexistent/command"), Options{})
	if !errors.Is(err, ErrStart) || st.Code != 127 {
		t.Errorf("missing command: %+v, %v", st, err)
	}
}

// sendWhenReady sends sig once the command has written ready, that is,
// once its traps are set.
func sendWhenReady(t *testing.T, ready string, sigs chan<- os.Signal, sig os.Signal) {
	go func() {
		for {
			if _, err := os.Stat(ready); err == nil {
				sigs <- sig
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

func TestForwardsToTheGroupAndKillsAfterGrace(t *testing.T) {
	ready := t.TempDir() + "/ready"
	sigs := make(chan os.Signal, 1)
	// A shell that ignores SIGTERM, and a child of it that does too: only
	// the group's SIGKILL after the grace period ends them.
	sendWhenReady(t, ready, sigs, syscall.SIGTERM)
	st := run(t, sigs, 100*time.Millisecond, `trap '' TERM; touch `+ready+`; sleep 300 & wait; wait`)
	if !st.Killed || st.Signal != syscall.SIGKILL {
		t.Fatalf("want the group killed after the grace period: %+v", st)
	}
	// A forwarded SIGUSR1 reaches the command's trap.
	os.Remove(ready)
	sendWhenReady(t, ready, sigs, syscall.SIGUSR1)
	if st := run(t, sigs, time.Minute, `trap 'exit 9' USR1; touch `+ready+`; while :; do sleep 0.05; done`); st.Code != 9 {
		t.Fatalf("SIGUSR1 not forwarded: %+v", st)
	}
}
