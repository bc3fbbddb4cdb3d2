package control

import "errors"

// Kinds of failure of the commands that act on a mount, for the CLI's exit
// codes.
var (
	// ErrNotMounted: nothing of cachefs's is mounted there, or no daemon
	// of this user's serves it.
	ErrNotMounted = errors.New("not mounted")
	// ErrBusy: files are open on the mount.
	ErrBusy = errors.New("busy")
	// ErrTimeout: the daemon did not exit in time.
	ErrTimeout = errors.New("timed out")
	// ErrInterrupted: the context ended first.
	ErrInterrupted = errors.New("interrupted")
	// ErrConflict: a push left files that changed on the source.
	ErrConflict = errors.New("push conflict")
)

// Error is a failure of one Kind; its message is Err's alone. It has the
// shape of daemon.Error but is kept apart: the kinds differ, each package
// names its own, and a package shared for a six-line type would tie the
// control protocol to the daemon's errors for the CLI's one lookup of both.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() []error { return []error{e.Err, e.Kind} }

func fail(kind, err error) error { return &Error{Kind: kind, Err: err} }
