// Package push stages the changes of a writable view back to SOURCE: new
// and changed regular files, new directories and symlinks from the upper
// layer, the way `rsync -a --update` would, but atomic and aware of what
// changed on SOURCE since the snapshot.
//
// # Invariants
//
//   - Each file lands whole or not at all: written under a temporary name
//     (prefix TempPrefix, created O_EXCL) in its target directory, fsynced,
//     then renamed over the target within that directory's descriptor. A
//     reader of SOURCE sees the old file or the new one; a push killed
//     part-way leaves temporaries that the next push into that directory
//     removes.
//   - A file that changed on SOURCE since the snapshot (its inode, size or
//     mtime differ, it was removed, or it appeared where the snapshot had
//     nothing) is not overwritten without Force: it is reported as a
//     conflict. Pushes serialise per target directory with flock on the
//     directory, so of two pushes of one path the second sees the first's
//     file as a change and skips it; where flock does not reach (another
//     host on a file system without it), a new file is renamed with
//     RENAME_NOREPLACE and a replaced one still lands whole.
//   - Nothing is opened by a path that SOURCE or the upper layer can
//     redirect: directories of SOURCE are opened beneath the source root
//     with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), the upper layer is
//     walked one O_NOFOLLOW directory descriptor at a time, and files to
//     copy must be regular files by fstat. A symlink planted in SOURCE (or
//     through the view) makes that entry fail, never redirects a write.
//   - Deletions are pushed only with Delete, and only of entries SOURCE
//     still holds unchanged since the snapshot.
package push

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// TempPrefix starts the name of every temporary a push creates.
const TempPrefix = ".cachefs-push."

// Sentinels; errors wrap them.
var (
	// ErrConflict: the file changed on SOURCE since the snapshot.
	ErrConflict = errors.New("changed on the source since the snapshot")
	// ErrReadOnly: SOURCE does not accept writes.
	ErrReadOnly = fmt.Errorf("push: the source is read-only: %w", syscall.EROFS)
	// ErrUnsafe: an entry on the way is a symlink or not what it should be.
	ErrUnsafe = errors.New("not a plain directory or file beneath the source root")
)

// DefaultExcludes are never pushed: lock files only mean something to the
// processes of one node.
var DefaultExcludes = []string{"*.lock"}

// Options say what to push where.
type Options struct {
	Source  string             // SOURCE root, resolved
	Upper   string             // the upper layer
	Base    *snapshot.Snapshot // the snapshot the changes were made against
	Force   bool               // overwrite files changed on SOURCE
	Delete  bool               // push deletions (whiteouts)
	DryRun  bool               // decide, report, write nothing
	Exclude []string           // patterns matched against the name and the relative path
	Logger  zerolog.Logger
	// Progress, if set, is called after each entry.
	Progress func(Result)
}

// Action is what a push did with one entry.
type Action string

// Actions.
const (
	Copied    Action = "copied"
	Created   Action = "mkdir"
	Linked    Action = "symlink"
	Deleted   Action = "deleted"
	Unchanged Action = "unchanged"
	Excluded  Action = "excluded"
	Conflict  Action = "conflict"
	NotPushed Action = "deletion not pushed"
	Failed    Action = "failed"
)

// Entry is one decision.
type Entry struct {
	Path   string `json:"path"`
	Action Action `json:"action"`
	Bytes  int64  `json:"bytes,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Result sums up a push.
type Result struct {
	Copied    int     `json:"copied"`
	Bytes     int64   `json:"bytes"`
	Dirs      int     `json:"dirs"`
	Symlinks  int     `json:"symlinks"`
	Deleted   int     `json:"deleted"`
	Unchanged int     `json:"unchanged"`
	Excluded  int     `json:"excluded"`
	Conflicts int     `json:"conflicts"`
	NotPushed int     `json:"deletions_not_pushed"`
	Failed    int     `json:"failed"`
	DryRun    bool    `json:"dry_run,omitempty"`
	Entries   []Entry `json:"entries"`
}

func (r *Result) add(e Entry) {
	switch e.Action {
	case Copied:
		r.Copied++
		r.Bytes += e.Bytes
	case Created:
		r.Dirs++
	case Linked:
		r.Symlinks++
	case Deleted:
		r.Deleted++
	case Unchanged:
		r.Unchanged++
	case Excluded:
		r.Excluded++
	case Conflict:
		r.Conflicts++
	case NotPushed:
		r.NotPushed++
	case Failed:
		r.Failed++
	}
	if e.Action != Unchanged && e.Action != Excluded {
		r.Entries = append(r.Entries, e)
	}
}

// excluded reports whether rel matches a pattern, by its name or its path.
func excluded(patterns []string, rel string) bool {
	name := filepath.Base(rel)
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, name); ok {
			return true
		}
		if ok, _ := filepath.Match(p, rel); ok {
			return true
		}
		if strings.HasSuffix(p, "/") && (rel+"/" == p || strings.HasPrefix(rel, p)) {
			return true
		}
	}
	return false
}
