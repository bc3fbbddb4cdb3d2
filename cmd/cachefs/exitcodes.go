package main

import (
	"errors"
	"strings"
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
	exitInterrupted = 130
)

// exitError carries an exit code with the error that causes it.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withCode attaches code to err unless err already carries one: the
// innermost code is the most specific.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	return &exitError{code: code, err: err}
}

func usageError(err error) error { return withCode(exitUsage, err) }

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra reports unknown commands and flags it parsed itself as plain
	// errors; they are usage errors all the same.
	msg := err.Error()
	if strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand") {
		return exitUsage
	}
	return exitInternal
}
