// Package cachedir names what a cachefs cache directory holds. Every
// package that opens, creates or reports a name in one takes it from here,
// so the layout is written once:
//
//	CACHE-DIR/
//	  blocks/XX/NAME     cache files and their presence logs (blockcache)
//	  lock               held by the daemon that owns the directory (blockcache)
//	  cachefs.log        the daemon's log, unless --log-file says otherwise
//	  snapshot.index     the index --reuse-index keeps
//	  control.sock       the control socket that status and warm reach
//
// The directory itself is private to its user (package privdir), so the
// socket and the log need no protection of their own beyond their modes.
package cachedir

import "path/filepath"

// Names inside a cache directory, relative to it; blockcache opens its
// own relative to a descriptor of the directory.
const (
	BlocksName = "blocks"
	LockName   = "lock"
	LogName    = "cachefs.log"
	IndexName  = "snapshot.index"
	SocketName = "control.sock"
)

// Layout is a cache directory, by path.
type Layout string

func (l Layout) Dir() string    { return string(l) }
func (l Layout) Blocks() string { return filepath.Join(string(l), BlocksName) }
func (l Layout) Lock() string   { return filepath.Join(string(l), LockName) }
func (l Layout) Log() string    { return filepath.Join(string(l), LogName) }
func (l Layout) Index() string  { return filepath.Join(string(l), IndexName) }
func (l Layout) Socket() string { return filepath.Join(string(l), SocketName) }
