package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/push"
)

// Exit codes are part of the interface: job scripts branch on them.
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
	exitIndex       = 11
	exitDiffers     = 12
	exitConflict    = 13
	exitPush        = 14
	exitPeers       = 15
	exitInterrupted = 130
)

// exitCodes is the one table of exit codes: what each means, as the help's
// EXIT STATUS section says it, and the kinds of library error that map to
// it, the one place where a library's failure becomes a job script's branch.
var exitCodes = []struct {
	code  int
	help  string
	kinds []error
}{
	{exitOK, "success", nil},
	{exitInternal, "internal error", []error{control.ErrBadReply}},
	{exitUsage, "usage error: unknown flag, wrong arguments", []error{daemon.ErrUsage, control.ErrPath}},
	{exitSource, "source error: missing, not a directory, unreadable", []error{daemon.ErrSource}},
	{exitMountpoint, "mountpoint error: not a directory, not empty, cannot be created, it would hide the source or the cache directory, or another user could choose where it leads", []error{daemon.ErrMountpoint}},
	{exitMounted, "mountpoint already mounted", []error{daemon.ErrMounted}},
	{exitMountFailed, "mount failed: FUSE unavailable, permission denied, daemon died", []error{daemon.ErrMountFailed, control.ErrNoAnswer}},
	{exitNotMounted, "not mounted", []error{control.ErrNotMounted}},
	{exitBusy, "busy: files are open on the mount (unmount --lazy detaches)", []error{control.ErrBusy}},
	{exitCacheDir, "cache directory error: unusable, in use, or not yours alone (owned by another user, a symlink, or open to others); the same for the runtime directory and the log file", []error{daemon.ErrCacheDir, control.ErrNotCached}},
	{exitTimeout, "timed out waiting for the daemon", []error{control.ErrTimeout}},
	{exitIndex, "snapshot index error: cannot be read or written, corrupt, wrong version, too old, or made from another source", []error{daemon.ErrIndex}},
	{exitDiffers, "snapshot --check: the index differs from the source", []error{daemon.ErrDiffers}},
	{exitConflict, "push: files changed on SOURCE since the snapshot were not overwritten", []error{control.ErrConflict}},
	{exitPush, "push: SOURCE is read-only, or some entries could not be pushed", []error{control.ErrPush, push.ErrReadOnly}},
	{exitPeers, "--peers: the secret file is unsafe (not yours, open to others, a symlink) or unreadable, or the --listen address cannot be bound", []error{daemon.ErrPeers}},
	{exitInterrupted, "interrupted", []error{daemon.ErrInterrupted, control.ErrInterrupted}},
}

// exitStatusHelp is the EXIT STATUS section of every command's help.
var exitStatusHelp = exitStatusSection()

func exitStatusSection() string {
	var b strings.Builder
	b.WriteString("\nEXIT STATUS\n")
	for _, c := range exitCodes {
		line := fmt.Sprintf("  %-3d", c.code)
		for _, w := range strings.Fields(c.help) {
			if len(line)+1+len(w) > 76 {
				b.WriteString(line + "\n")
				line = "     "
			}
			line += " " + w
		}
		b.WriteString(line + "\n")
	}
	return b.String()
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

// knownCode finds err's code: its own, else its kind's (a library's
// innermost, the most specific), else that of any library error it wraps.
func knownCode(err error) (int, bool) {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code, true
	}
	kind := daemon.KindOf(err)
	if ce := (*control.Error)(nil); kind == nil && errors.As(err, &ce) {
		kind = ce.Kind
	}
	if code, ok := tableCode(func(k error) bool { return k == kind }); ok {
		return code, true
	}
	return tableCode(func(k error) bool { return errors.Is(err, k) })
}

// tableCode is the code of the first kind in the table that matches.
func tableCode(match func(kind error) bool) (int, bool) {
	for _, c := range exitCodes {
		if slices.ContainsFunc(c.kinds, match) {
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
