package main

import (
	"errors"
	"strings"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/push"
)

// Exit codes are part of the interface: job scripts branch on them. They are
// listed in the root command's help under EXIT STATUS.
const (
	exitOK          = 0
	exitInternal    = 1
	exitUsage       = 2
	exitSource      = 3
	exitMountpoint  = 4
	exitMounted     = 5
	exitMountFailed = 6
	exitNotMounted  = 7
	exitBusy        = 8
	exitCacheDir    = 9
	exitTimeout     = 10
	exitIndex       = 11 // snapshot index: unreadable, corrupt, wrong version, too old, or from another source
	exitDiffers     = 12 // snapshot --check: the index differs from the source
	exitConflict    = 13 // push: files changed on the source were not overwritten
	exitPush        = 14 // push: the source refused writes, or entries failed
	exitPeers       = 15 // --peers: the secret file is unsafe or unreadable, or --listen cannot be bound
	exitInterrupted = 130
)

// libraryCodes maps the kinds of error the libraries return to exit codes:
// the one place where a library's failure becomes a job script's branch.
var libraryCodes = []struct {
	kind error
	code int
}{
	{daemon.ErrSource, exitSource},
	{daemon.ErrMountpoint, exitMountpoint},
	{daemon.ErrMounted, exitMounted},
	{daemon.ErrMountFailed, exitMountFailed},
	{daemon.ErrCacheDir, exitCacheDir},
	{daemon.ErrIndex, exitIndex},
	{daemon.ErrUsage, exitUsage},
	{daemon.ErrPeers, exitPeers},
	{daemon.ErrInterrupted, exitInterrupted},
	{control.ErrNoAnswer, exitMountFailed},
	{control.ErrBadReply, exitInternal},
	{push.ErrReadOnly, exitPush},
}

// exitError carries an exit code with the error that causes it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches code to err unless err already carries one, its own or
// its library's: the innermost code is the most specific.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := knownCode(err); ok {
		return err
	}
	return &exitError{code: code, err: err}
}

func usageError(err error) error { return withCode(exitUsage, err) }

func knownCode(err error) (int, bool) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, true
	}
	for _, c := range libraryCodes {
		if errors.Is(err, c.kind) {
			return c.code, true
		}
	}
	return 0, false
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if code, ok := knownCode(err); ok {
		return code
	}
	// cobra reports unknown commands and flags it parsed itself as plain
	// errors; they are usage errors all the same.
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand") {
		return exitUsage
	}
	return exitInternal
}
