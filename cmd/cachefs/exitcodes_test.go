package main

import (
	"errors"
	"fmt"
	"regexp"
	"testing"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/daemon"
)

// Every code of the table is in the help, once, and no two share a value.
func TestExitStatusHelpFromTable(t *testing.T) {
	seen := map[int]bool{}
	for _, c := range exitCodes {
		if seen[c.code] {
			t.Errorf("exit code %d is in the table twice", c.code)
		}
		seen[c.code] = true
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^  %d +\S`, c.code))
		if n := len(re.FindAllString(exitStatusHelp, -1)); n != 1 {
			t.Errorf("EXIT STATUS lists %d %d times, want once:\n%s", c.code, n, exitStatusHelp)
		}
	}
	help := newRootCommand().Long
	if !regexp.MustCompile(`EXIT STATUS\n  0 +success`).MatchString(help) {
		t.Errorf("the root command's help has no generated EXIT STATUS:\n%s", help)
	}
}

// A library's kind decides the code, whatever else the error wraps.
func TestExitCodeOfKinds(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{&control.Error{Kind: control.ErrBusy, Err: errors.New("busy")}, exitBusy},
		{&control.Error{Kind: control.ErrConflict, Err: fmt.Errorf("x: %w", control.ErrBadReply)}, exitConflict},
		{&daemon.Error{Kind: daemon.ErrIndex, Err: fmt.Errorf("x: %w", control.ErrNoAnswer)}, exitIndex},
		{fmt.Errorf("m: %w", control.ErrNoAnswer), exitMountFailed},
		{errors.New("plain"), exitInternal},
	} {
		if got := exitCode(c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}
