package daemon

import (
	"fmt"
	"io"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
)

// Config is one mount, parsed and checked for usage errors by the CLI.
type Config struct {
	Source     string // resolved, absolute
	Mountpoint string // resolved, absolute
	CacheDir   string // absolute
	// CacheUnder is the shared parent ($TMPDIR) of a default cache
	// directory, whose directories below it are made by privdir's rule
	// for shared parents; "" for a directory the user named, adopted by
	// the rule for explicit ones.
	CacheUnder string
	LogFile    string
	Runtime    control.RuntimeDir

	Walkers     int
	AllowOther  bool
	DebugFuse   bool
	Cache       CacheSize
	BlockSize   int64
	ReadAhead   int // 0 turns read-ahead off
	Passthrough Passthrough
	// Prefetch bounds background fetches; Early says which run. Its
	// Logger, BlockSize and ListMaxBytes are set here.
	Prefetch prefetch.Options
	Early    Early
	Index    IndexConfig
	// Writable stacks an overlay at Mountpoint and serves the read-only
	// mount below it, under the cache directory.
	Writable bool
	Metrics  MetricsConfig
	// Peers, if set, shares blocks with the other nodes of the job.
	Peers *PeerConfig

	// Logger logs until the log file is open.
	Logger zerolog.Logger
	// LogTo, if set, makes the log file the daemon's log once it can be
	// opened, and stderr too, so a panic lands there; a daemon in the
	// background sets it.
	LogTo func(io.Writer) zerolog.Logger
	// Serving, if set, hears the logger and a status line maker once the
	// mount serves; the CLI's signal policy answers SIGUSR1 with it.
	Serving func(log zerolog.Logger, status func() string)
}

// CacheSize is the cache budget: Bytes, or Percent of the filesystem that
// holds the cache directory, measured once the directory exists.
type CacheSize struct {
	Bytes   int64
	Percent float64
}

// Passthrough is the --passthrough policy.
type Passthrough int

const (
	PassthroughAuto Passthrough = iota
	PassthroughOn
	PassthroughOff
)

// IndexConfig chooses where the snapshot comes from: a walk of the source,
// or an index written earlier.
type IndexConfig struct {
	Path     string        // load this index instead of walking
	MaxAge   time.Duration // refuse an older Path, re-walk an older kept one; 0: no limit
	SavePath string        // also write the walk's index here
	Reuse    bool          // keep an index in the cache dir, reuse it while the root is unchanged
}

// Reporter hears the walk's progress and, once, that the mount serves.
type Reporter interface {
	Progress(snapshot.Counts)
	Ready(Ready)
}

// ReadySchema is the version of Ready's JSON, which `cachefs mount --json`
// prints: a field's meaning never changes within a version, and fields are
// only ever added.
const ReadySchema = 1

// Ready is what a serving mount tells its launcher.
type Ready struct {
	Schema     int            `json:"schema"`
	Pid        int            `json:"pid"`
	Source     string         `json:"source"`
	Mountpoint string         `json:"mountpoint"`
	CacheDir   string         `json:"cache_dir"`
	LogFile    string         `json:"log_file"`
	Stats      snapshot.Stats `json:"snapshot"`
	// Seconds took the walk of the source, or the load of an index.
	Seconds float64 `json:"snapshot_seconds"`
	// Writable describes a writable view: its kind and where its changes go.
	Writable string `json:"writable,omitempty"`
}

// Summary is the line `cachefs mount` prints once the mount serves.
func (r *Ready) Summary() string {
	s := fmt.Sprintf("cachefs: serving %s at %s: %s snapshotted in %.2fs, %d unreadable; cache %s; log %s; daemon pid %d",
		r.Source, r.Mountpoint, Entries(r.Stats), r.Seconds, r.Stats.Errors, r.CacheDir, r.LogFile, r.Pid)
	if r.Writable != "" {
		s += "; " + r.Writable
	}
	return s
}

// Entries is the size of a snapshot as summaries give it.
func Entries(s snapshot.Stats) string {
	return fmt.Sprintf("%s entries (%s dirs, %s files, %s)",
		humanize.Comma(s.Entries), humanize.Comma(s.Dirs), humanize.Comma(s.Files), humanize.IBytes(uint64(s.Bytes)))
}
