package daemon

import "errors"

// Kinds of failure, for the CLI's exit codes.
var (
	// ErrSource: missing, not a directory, unreadable, or the walk failed.
	ErrSource = errors.New("source")
	// ErrMountpoint: not a directory, not empty, cannot be made, or it
	// would hide the source.
	ErrMountpoint = errors.New("mountpoint")
	// ErrMounted: something is mounted at the mountpoint already.
	ErrMounted = errors.New("already mounted")
	// ErrMountFailed: the kernel or fusermount3 refused the mount.
	ErrMountFailed = errors.New("mount failed")
	// ErrCacheDir: the cache directory, runtime directory or log file is
	// unusable, in use, or not this user's alone.
	ErrCacheDir = errors.New("cache directory")
	// ErrIndex: a snapshot index cannot be read, written or used here.
	ErrIndex = errors.New("snapshot index")
	// ErrUsage: a setting only the snapshot can check is wrong, such as
	// a path to warm that it does not hold.
	ErrUsage = errors.New("usage")
	// ErrPeers: the peer secret file is unsafe or unreadable, or the
	// listen address cannot be bound.
	ErrPeers = errors.New("peers")
	// ErrInterrupted: the context ended before the mount served.
	ErrInterrupted = errors.New("interrupted")
)

// Error is a failure of one Kind; its message is Err's alone.
type Error struct {
	Kind error
	Err  error
}

func (e *Error) Error() string   { return e.Err.Error() }
func (e *Error) Unwrap() []error { return []error{e.Err, e.Kind} }

// fail gives err the kind, unless it already has one: the innermost kind
// is the most specific.
func fail(kind, err error) error {
	if err == nil {
		return nil
	}
	var de *Error
	if errors.As(err, &de) {
		return err
	}
	return &Error{Kind: kind, Err: err}
}

// KindOf returns the kind of err, or nil for an error of no kind.
func KindOf(err error) error {
	var de *Error
	if errors.As(err, &de) {
		return de.Kind
	}
	return nil
}
