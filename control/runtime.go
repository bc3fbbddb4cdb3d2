package control

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cachefs/cachefs/privdir"
)

// Record is what a daemon leaves in the runtime directory so that unmount
// can find its pid and the figures it served.
type Record struct {
	Pid        int          `json:"pid"`
	Source     string       `json:"source"`
	Mountpoint string       `json:"mountpoint"`
	CacheDir   string       `json:"cache_dir"`
	LogFile    string       `json:"log_file"`
	Started    time.Time    `json:"started"`
	Exited     bool         `json:"exited,omitempty"`
	Final      *StatusReply `json:"final,omitempty"`
	// Writable is set for a writable view: Mountpoint is the view, and
	// the daemon serves the read-only layer below it.
	Writable *WritableRecord `json:"writable,omitempty"`
}

// WritableRecord is what a mount record says of a writable view, so that
// unmount, push and status find its layers.
type WritableRecord struct {
	Kind  string `json:"kind"`
	Dir   string `json:"dir"` // CACHE/writable
	Lower string `json:"lower"`
	Upper string `json:"upper"`
}

// RuntimeDir is where one user's daemons leave their records: Parent,
// trusted as a whole, and the private directories Names below it. The CLI
// decides it from the user and the environment.
type RuntimeDir struct {
	Parent string
	Names  []string
}

// Path is the directory's name, unverified: for removing a record, which
// unlinks without following a link.
func (d RuntimeDir) Path() string {
	return filepath.Join(append([]string{d.Parent}, d.Names...)...)
}

// Make creates or adopts the directory (package privdir).
func (d RuntimeDir) Make() (string, error) { return privdir.Make(d.Parent, d.Names...) }

// Find verifies the directory without creating it.
func (d RuntimeDir) Find() (string, error) { return privdir.Find(d.Parent, d.Names...) }

func recordName(mountpoint string) string {
	h := sha256.Sum256([]byte(mountpoint))
	return hex.EncodeToString(h[:8]) + ".json"
}

// RecordPath is where the record of the mount at mountpoint lives.
func (d RuntimeDir) RecordPath(mountpoint string) string {
	return filepath.Join(d.Path(), recordName(mountpoint))
}

// Write replaces the record atomically so a reader never sees half.
func (d RuntimeDir) Write(r *Record) error {
	dir, err := d.Make()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return privdir.WriteReplace(dir, recordName(r.Mountpoint), b)
}

// Read reads the record of the mount at mountpoint. An error that is
// privdir.ErrNotPrivate means another user could have made it.
func (d RuntimeDir) Read(mountpoint string) (*Record, error) {
	dir, err := d.Find()
	if err != nil {
		return nil, err
	}
	return ReadRecordFile(filepath.Join(dir, recordName(mountpoint)))
}

// List names the record files in the directory, if it is there and private.
func (d RuntimeDir) List() ([]string, error) {
	dir, err := d.Find()
	if err != nil {
		return nil, err
	}
	return filepath.Glob(filepath.Join(dir, "*.json"))
}

// ReadRecordFile reads a record only if it is a file of this user's, not a
// link.
func ReadRecordFile(path string) (*Record, error) {
	b, err := privdir.ReadOwned(path, 1<<20)
	if err != nil {
		return nil, err
	}
	r := &Record{}
	return r, json.Unmarshal(b, r)
}

// RuntimeDirFor says where this user's mounts leave their records. Root's
// is /run/cachefs whatever the session: a job prologue has no
// XDG_RUNTIME_DIR, and root's later interactive shell must find its
// records. Others use $XDG_RUNTIME_DIR/cachefs (xdg) or, failing that, a
// directory of their own under the shared tmp. An override
// (CACHEFS_RUNTIME_DIR) beats all of them, for a site that keeps records
// elsewhere and for test suites that must not see each other's mounts; it
// is checked like any other.
func RuntimeDirFor(override, xdg, tmp string) RuntimeDir {
	if override != "" {
		d := filepath.Clean(override)
		return RuntimeDir{Parent: filepath.Dir(d), Names: []string{filepath.Base(d)}}
	}
	if os.Geteuid() == 0 {
		if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
			return RuntimeDir{Parent: "/run", Names: []string{"cachefs"}}
		}
	}
	if xdg != "" {
		return RuntimeDir{Parent: xdg, Names: []string{"cachefs"}}
	}
	return RuntimeDir{Parent: tmp, Names: []string{fmt.Sprintf("cachefs-%d", os.Geteuid()), "run"}}
}
