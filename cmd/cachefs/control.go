package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	cfs "github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
)

// The daemon answers `cachefs status` and `cachefs warm` over HTTP on a
// unix socket in the cache directory (0700, socket 0600): no root needed,
// nothing visible inside the mount, and only the mount's owner gets in.

// daemonState is what the control server reports on and acts upon.
type daemonState struct {
	src, mnt, cacheDir, logFile string
	started                     time.Time
	snap                        *snapshot.Snapshot
	m                           *cfs.Mount
	cache                       *blockcache.Cache
	content                     cacheContent
	pf                          *prefetch.Prefetcher // nil with --prefetch off
	passthrough                 bool
	openMode                    string // how files are opened, and why
	log                         zerolog.Logger
	upper                       string // a writable view's upper layer, or ""
}

// statusReply is `cachefs status --json` for one mount.
type statusReply struct {
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
	Writable *writableStatus `json:"writable,omitempty"`
}

func (d *daemonState) status() statusReply {
	s := d.m.Stats()
	r := statusReply{
		Source: d.src, Mountpoint: d.mnt, CacheDir: d.cacheDir, LogFile: d.logFile, Pid: os.Getpid(),
		UptimeSeconds: time.Since(d.started).Seconds(), Snapshot: d.snap.Stats(), Cache: d.cache.Stats(),
		Opens: s.Opens.Load(), BytesServed: s.BytesServed.Load(), Errors: s.Errors.Load(),
		Passthrough: d.passthrough, OpenMode: d.openMode,
	}
	if d.pf != nil {
		ps := d.pf.Stats()
		r.Prefetch = &ps
	}
	r.Writable = upperStatus(d.upper)
	return r
}

func socketPath(cacheDir string) string { return filepath.Join(cacheDir, "control.sock") }

// serveControl starts the control server; the returned func stops it.
func serveControl(d *daemonState) (func(), error) {
	path := socketPath(d.cacheDir)
	// A socket left by a killed daemon; the cache-dir lock already proves
	// no live daemon owns it.
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d.status())
	})
	mux.HandleFunc("POST /warm", d.handleWarm)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		os.Remove(path)
	}, nil
}

type warmRequest struct {
	Paths   []string `json:"paths"` // relative to the mount root; empty means all
	Workers int      `json:"workers"`
}

// warmMsg is one line of the warm reply stream.
type warmMsg struct {
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

// Why a path given to warm names nothing to warm; the CLI reports these
// as usage errors.
var (
	errLeavesMount = errors.New("leaves the mount")
	errNotInMount  = errors.New("not in the mount: no such file or directory")
	errNotDir      = errors.New("not a directory")
	errSymlink     = errors.New("is a symbolic link; name what it points to instead")
	errLongName    = fmt.Errorf("has a name longer than %d bytes", maxNameLen)
)

// maxNameLen is NAME_MAX: no file system the source can be on holds a
// longer name.
const maxNameLen = 255

// resolve finds a path relative to the mount root in the snapshot, one
// component at a time as the kernel would: ".." climbs to the parent and
// is refused at the root, where it would leave the mount (a lexical clean
// would instead stop at the root and name everything). Symbolic links are
// refused rather than followed, in the path and at its end: warm names what
// is in the mount, and a link's target may lie outside it.
func resolve(s *snapshot.Snapshot, rel string) (uint32, error) {
	idx := uint32(0)
	for _, part := range strings.Split(rel, "/") {
		switch {
		case part == "" || part == ".":
			continue
		case len(part) > maxNameLen:
			return 0, fmt.Errorf("%s %w", rel, errLongName)
		case isLink(s, idx):
			return 0, fmt.Errorf("%s %w", s.Path(idx), errSymlink)
		case !s.Attr(idx).IsDir():
			return 0, fmt.Errorf("%s: %w", s.Path(idx), errNotDir)
		case part == "..":
			if idx == 0 {
				return 0, fmt.Errorf("%s %w", rel, errLeavesMount)
			}
			idx = s.Parent(idx)
			continue
		}
		c, ok := s.Lookup(idx, part)
		if !ok {
			return 0, fmt.Errorf("%s: %w", rel, errNotInMount)
		}
		idx = c
	}
	if isLink(s, idx) {
		return 0, fmt.Errorf("%s %w", s.Path(idx), errSymlink)
	}
	return idx, nil
}

func isLink(s *snapshot.Snapshot, i uint32) bool {
	return s.Attr(i).Mode&snapshot.ModeType == snapshot.ModeLink
}

func (d *daemonState) handleWarm(w http.ResponseWriter, r *http.Request) {
	var req warmRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(req.Paths) == 0 {
		req.Paths = []string{""}
	}
	if req.Workers <= 0 {
		req.Workers = 8
	}
	enc := json.NewEncoder(w)
	flush := func(m warmMsg) {
		enc.Encode(m)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	roots := make([]uint32, len(req.Paths))
	for i, p := range req.Paths {
		idx, err := resolve(d.snap, p)
		if err != nil {
			flush(warmMsg{Done: true, PathError: err.Error()})
			return
		}
		roots[i] = idx
	}
	// Every regular file below the requested paths, each once.
	var files []uint32
	var total int64
	seen := map[uint32]bool{}
	for _, idx := range roots {
		for q := []uint32{idx}; len(q) > 0; q = q[1:] {
			i := q[0]
			a := d.snap.Attr(i)
			switch {
			case a.IsDir():
				lo, hi := d.snap.Children(i)
				for c := lo; c < hi; c++ {
					q = append(q, c)
				}
			case a.IsRegular() && !seen[i]:
				seen[i] = true
				files = append(files, i)
				total += a.Size
			}
		}
	}
	var filesDone, bytesDone, fetched atomic.Int64
	progress := func(final bool) warmMsg {
		return warmMsg{FilesDone: filesDone.Load(), FilesTotal: int64(len(files)), BytesDone: bytesDone.Load(),
			BytesTotal: total, Fetched: fetched.Load(), Done: final}
	}
	ctx := r.Context()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(req.Workers)
	stopTick := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopTick:
				return
			case <-t.C:
				flush(progress(false))
			}
		}
	}()
	for _, i := range files {
		g.Go(func() error {
			n, err := d.content.warm(gctx, i)
			fetched.Add(n)
			if err != nil {
				return fmt.Errorf("%s: %w", d.snap.Path(i), err)
			}
			filesDone.Add(1)
			bytesDone.Add(d.snap.Attr(i).Size)
			return nil
		})
	}
	err := g.Wait()
	close(stopTick)
	<-ticked
	final := progress(true)
	for _, i := range files {
		if d.content.cached(i) {
			final.FilesCached++
		}
	}
	if err != nil {
		if errors.Is(err, blockcache.ErrNoRoom) {
			err = fmt.Errorf("the cache budget is too small to hold everything asked for: %w", err)
		}
		final.Error = err.Error()
	}
	d.log.Info().Strs("paths", req.Paths).Int64("files", final.FilesCached).Int64("fetched", final.Fetched).
		Str("error", final.Error).Msg("warm finished")
	flush(final)
}

// controlIdle is the longest silence a control client accepts from the
// daemon: a warm streams progress every 200 ms once it has listed the files
// asked for, and status answers at once, so a daemon silent for longer is
// stopped or stuck, and the client gives up on it instead of waiting.
const controlIdle = 30 * time.Second

// dialControl returns an HTTP client that talks to the daemon whose cache
// directory is cacheDir.
func dialControl(cacheDir string) *http.Client {
	sock := socketPath(cacheDir)
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			dl := net.Dialer{Timeout: 5 * time.Second}
			c, err := dl.DialContext(ctx, "unix", sock)
			if err != nil {
				return nil, err
			}
			return idleConn{c, controlIdle}, nil
		},
	}}
}

// idleConn fails a read that waits longer than idle for the daemon.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}
