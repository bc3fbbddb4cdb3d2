// Package control is the seam between a serving daemon and the commands
// that ask it questions: the wire types of its control socket, the client
// that `cachefs status` and `cachefs warm` use, the server the daemon runs,
// and the runtime records a daemon leaves for `cachefs unmount`. On the
// commands' side it finds the live mounts (Live, AllLive), follows a warm
// (WarmAll), unmounts a mount or its writable view and waits for its daemon
// (Unmount), and pushes a view's changes (Push). Failures carry a kind
// (ErrNotMounted, ErrBusy, ...) that the CLI maps to an exit code.
//
// # Transport
//
// HTTP over a unix socket in the cache directory (0700, socket 0600): no
// root needed, nothing visible inside the mount, and only the mount's owner
// gets in. GET /status answers a StatusReply; POST /warm takes a
// WarmRequest and streams WarmMsg lines, the last one with Done set. A
// socket path longer than a sockaddr_un holds is bound and reached through
// /proc/self/fd of its directory, checked to be the user's own.
//
// # Deadlines
//
// A client gives up on a daemon that stays silent for Idle: a stopped or
// wedged daemon never holds a command. The server bounds a request's
// headers and its shutdown.
//
// # Runtime records
//
// A record is a small JSON file per mountpoint in a private runtime
// directory (package privdir): the daemon's pid, its paths and, once it
// exited, the figures it served. A record steers unmount and status to a
// pid and a socket, so one is read only if it is this user's own file.
package control

import (
	"fmt"
	"strings"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/peer"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
)

// StatusSchema is the version of StatusReply's JSON, documented in
// docs/operations.md: a field's meaning never changes within a version,
// and fields are only ever added.
const StatusSchema = 1

// StatusReply is `cachefs status --json` for one mount.
type StatusReply struct {
	Schema        int              `json:"schema"`
	Source        string           `json:"source"`
	Mountpoint    string           `json:"mountpoint"`
	CacheDir      string           `json:"cache_dir"`
	LogFile       string           `json:"log_file"`
	Pid           int              `json:"pid"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Snapshot      snapshot.Stats   `json:"snapshot"`
	Cache         blockcache.Stats `json:"cache"`
	Opens         int64            `json:"opens"`
	BytesServed   int64            `json:"bytes_served"`
	Errors        int64            `json:"errors"`
	Prefetch      *prefetch.Stats  `json:"prefetch,omitempty"`
	Passthrough   bool             `json:"passthrough"`
	// OpenMode says whether opens reach the daemon, and why.
	OpenMode string          `json:"open_mode"`
	Writable *WritableStatus `json:"writable,omitempty"`
	Peers    *peer.Stats     `json:"peers,omitempty"`
}

// WritableStatus is what status reports of a writable view: the changes
// a push would consider (regular files in the upper layer).
type WritableStatus struct {
	Upper string `json:"upper"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Figures is the one-line account unmount prints and the daemon logs.
func (r *StatusReply) Figures() string {
	c := r.Cache
	var b strings.Builder
	fmt.Fprintf(&b, "served %s in %s opens from %s entries over %s, %d errors; %s from the source, %s from the cache, %s passthrough opens; cache %s of %s, %d evictions",
		humanize.IBytes(uint64(r.BytesServed)), humanize.Comma(r.Opens), humanize.Comma(r.Snapshot.Entries),
		time.Duration(r.UptimeSeconds*1e9).Round(time.Second), r.Errors,
		humanize.IBytes(uint64(c.BytesFromSource)), humanize.IBytes(uint64(c.BytesFromCache)),
		humanize.Comma(c.PassthroughOffered), humanize.IBytes(uint64(c.Usage)), humanize.IBytes(uint64(c.Budget)), c.Evictions)
	if p := r.Prefetch; p != nil {
		fmt.Fprintf(&b, "; prefetched %s files (%s), %d in flight (at most %d)", humanize.Comma(p.Done), humanize.IBytes(uint64(p.Bytes)), p.InFlight, p.MaxInFlight)
	}
	if p := r.Peers; p != nil {
		fmt.Fprintf(&b, "; peers: %s read from the source, %s from peers, %s served to peers",
			humanize.IBytes(uint64(p.BytesFromSource)), humanize.IBytes(uint64(p.BytesFromPeers)), humanize.IBytes(uint64(p.BytesToPeers)))
	}
	return b.String()
}

// WarmRequest asks the daemon to fetch subtrees into its cache.
type WarmRequest struct {
	Paths   []string `json:"paths"` // relative to the mount root; empty means all
	Workers int      `json:"workers"`
}

// WarmMsg is one line of the warm reply stream.
type WarmMsg struct {
	FilesDone   int64  `json:"files_done"`
	FilesTotal  int64  `json:"files_total"`
	BytesDone   int64  `json:"bytes_done"`
	BytesTotal  int64  `json:"bytes_total"`
	Fetched     int64  `json:"fetched"`
	Done        bool   `json:"done,omitempty"`
	FilesCached int64  `json:"files_cached,omitempty"`
	Error       string `json:"error,omitempty"`
	// PathError: a requested path names nothing to warm; nothing was done.
	PathError string `json:"path_error,omitempty"`
}
