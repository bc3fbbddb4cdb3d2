package fusefs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
)

// forever is the kernel cache timeout for entries, attributes and negative
// lookups. The snapshot cannot change during a mount, so nothing the kernel
// caches can go stale; ten years is "never" while staying far from the
// overflow of the kernel's jiffies conversion.
const forever = 10 * 365 * 24 * time.Hour

// ErrMount wraps failures of the mount system call or of fusermount.
var ErrMount = errors.New("mount failed")

// ErrNoACLs refuses to share a snapshot whose walk did not record ACLs:
// other users would be checked against mode bits alone.
var ErrNoACLs = errors.New("a mount shared with other users needs a snapshot with ACLs recorded")

// Config describes one mount.
type Config struct {
	Snapshot *snapshot.Snapshot
	Content  Content
	// FsName is the "source" column of the mount table; cachefs puts the
	// source path there so that status and unmount can name it.
	FsName     string
	AllowOther bool
	Logger     zerolog.Logger
	// Debug logs every FUSE request; for development only.
	Debug bool
	// GoFuseLog receives go-fuse's own diagnostics; nil means stderr.
	GoFuseLog *log.Logger
	// Passthrough lets fully cached files be read by the kernel directly.
	Passthrough bool
	// OnOpen, if set, hears of every successful open of a regular file;
	// the prefetcher uses it. It must not block.
	OnOpen func(idx uint32)
	// OnList, if set, hears of every listing of a directory that the
	// kernel does not have cached; the prefetcher uses it. It must not
	// block.
	OnList func(idx uint32)
	// OnLookup, if set, hears of every regular file described to the
	// kernel (a lookup, or an entry of READDIRPLUS): the kernel holds its
	// inode once the reply is in. It must not block.
	OnLookup func(idx uint32)
	// OnForget, if set, hears of every inode the kernel dropped (with
	// its pages). It must not block.
	OnForget func(idx uint32)
	// uncounted serves without the request counters (OpStats), so that a
	// benchmark can weigh what they cost.
	uncounted bool
}

// Stats are counters a running mount keeps for status and unmount.
type Stats struct {
	Opens       atomic.Int64
	BytesServed atomic.Int64
	Errors      atomic.Int64
	Ops         OpStats
}

// Mount is a serving cachefs mount.
type Mount struct {
	srv        *fuse.Server
	mountpoint string
	log        zerolog.Logger
	stats      Stats
	// failed records files whose errors were already logged, so a failing
	// file makes one log line, not one per read.
	failed      sync.Map
	passthrough bool
	onOpen      func(idx uint32)
	onList      func(idx uint32)
	onLookup    func(idx uint32)
	onForget    func(idx uint32)
	// kernelOpens, once set, makes every open answer ENOSYS (see
	// KernelOpens); held then serves the reads, which come without handles.
	kernelOpens atomic.Bool
	held        *heldReaders
}

// New mounts cfg.Snapshot at mountpoint and returns once the kernel has
// confirmed the mount, so the caller may announce it as serving.
func New(mountpoint string, cfg Config) (*Mount, error) {
	m := &Mount{mountpoint: mountpoint, log: cfg.Logger, passthrough: cfg.Passthrough, onOpen: cfg.OnOpen, onList: cfg.OnList, onLookup: cfg.OnLookup, onForget: cfg.OnForget}
	snap := cfg.Snapshot
	if cfg.AllowOther {
		if !snap.ACLsRecorded() {
			return nil, ErrNoACLs
		}
		snap = snap.Shared()
	}
	logACLs(cfg.Logger, snap, cfg.AllowOther)
	t := newRawFS(snap, cfg.Content, m)
	m.held = newHeldReaders(cfg.Content.Open, m.heardOpen, m.closeReader, heldIdle, heldMax)
	fsName := cfg.FsName
	// fusermount passes fsname inside a comma-separated option list.
	if fsName == "" || strings.ContainsAny(fsName, ", \t\n\\") {
		fsName = "cachefs"
	}
	opts := fuse.MountOptions{
		AllowOther: cfg.AllowOther,
		FsName:     fsName,
		Name:       "cachefs",
		// default_permissions makes the kernel enforce the snapshot's
		// modes and owners; ro makes it refuse writes before they get here.
		Options:              []string{"ro", "default_permissions"},
		DirectMount:          true,
		DirectMountFlags:     syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_RDONLY,
		EnableSymlinkCaching: true,
		MaxBackground:        64,
		MaxReadAhead:         1 << 20,
		Debug:                cfg.Debug,
		Logger:               cfg.GoFuseLog,
		// Reads of cached ranges are spliced; 1 MiB requests (the
		// kernel's most) make an eighth of the round trips that the
		// default 128 KiB does for a sequential reader.
		MaxWrite: 1 << 20,
		// The kernel then checks the snapshot's POSIX ACLs as well as
		// the mode bits. It fetches an inode's ACL with one GETXATTR
		// and caches it as long as the inode's attributes, which is
		// forever here. Without ACLs there is nothing to check, and
		// leaving it off saves that request per inode.
		EnableAcl: snap.HasACLs(),
	}
	gogc := settleMemory()
	cfg.Logger.Debug().Int("gogc", gogc).Msg("garbage of the snapshot build returned; collector target set")
	var srv *fuse.Server
	said, err := withFusermountSaid(func() (err error) {
		var raw fuse.RawFileSystem = t
		if !cfg.uncounted {
			raw = m.stats.Ops.wrap(t)
		}
		if srv, err = fuse.NewServer(raw, mountpoint, &opts); err != nil {
			return err
		}
		t.srv = srv
		go srv.Serve()
		return srv.WaitMount()
	})
	if err != nil {
		m.held.close()
		// go-fuse reports a failed fusermount3 by its exit status only;
		// the reason is what fusermount3 printed.
		if said != "" {
			return nil, fmt.Errorf("fusefs: %w at %s: %s", ErrMount, mountpoint, said)
		}
		return nil, fmt.Errorf("fusefs: %w at %s: %s", ErrMount, mountpoint, strings.TrimSpace(err.Error()))
	}
	m.srv = srv
	return m, nil
}

// PassthroughAvailable reports whether fully cached files can bypass the
// daemon, and if not, why. The kernel offers it from Linux 6.9; registering
// a backing file needs CAP_SYS_ADMIN.
func (m *Mount) PassthroughAvailable() (bool, string) {
	switch {
	case !m.passthrough:
		return false, "disabled by --passthrough=false"
	case m.srv.KernelSettings().Flags64()&fuse.CAP_PASSTHROUGH == 0:
		return false, "the kernel does not offer FUSE passthrough (needs Linux 6.9+)"
	case os.Geteuid() != 0:
		return false, "passthrough needs root (CAP_SYS_ADMIN); fully cached files are spliced instead"
	}
	return true, "fully cached files are read by the kernel directly"
}

// Stats returns the live counters.
func (m *Mount) Stats() *Stats { return &m.stats }

// KernelOpens makes the kernel open regular files itself for the rest of
// the mount: the next OPEN is answered ENOSYS, which the kernel takes as
// "never ask again". Opens and closes then cost no round trip, and a file
// re-read from the page cache never reaches the daemon; reads that miss
// the page cache still do. Passthrough needs an OPEN to hand over the
// backing file, so it is off from then on. Irreversible.
func (m *Mount) KernelOpens() { m.kernelOpens.Store(true) }

// HeldReaders is the number of files whose Reader the daemon holds for
// reads without handles.
func (m *Mount) HeldReaders() int { return m.held.count() }

// heardOpen counts a file opened by the daemon and tells the prefetcher.
func (m *Mount) heardOpen(idx uint32) {
	m.stats.Opens.Add(1)
	if m.onOpen != nil {
		m.onOpen(idx)
	}
}

func (m *Mount) closeReader(idx uint32, r Reader) {
	if err := r.Close(); err != nil {
		m.log.Warn().Err(err).Uint32("entry", idx).Msg("close of a cached file failed")
	}
}

// Wait blocks until the mount is gone (unmounted by anyone), then gives
// back the Readers held for handle-less reads.
func (m *Mount) Wait() {
	m.srv.Wait()
	m.held.close()
}

// Unmount asks the kernel to unmount; it fails with EBUSY while files are open.
func (m *Mount) Unmount() error { return m.srv.Unmount() }

// fail logs a content error once per file and returns its errno.
func (m *Mount) fail(op string, idx uint32, off int64, n int, err error) syscall.Errno {
	m.stats.Errors.Add(1)
	e := errno(err)
	if _, seen := m.failed.LoadOrStore(idx, true); !seen {
		m.log.Error().Str("op", op).Uint32("entry", idx).Int64("off", off).Int("len", n).
			Str("errno", e.Error()).Err(err).Msg("read through the mount failed")
	}
	return e
}

// logACLs writes the one line that says how access control is served.
func logACLs(log zerolog.Logger, s *snapshot.Snapshot, shared bool) {
	with, unrecorded := s.ACLCounts()
	switch {
	case unrecorded > 0 && shared:
		log.Warn().Int64("entries", unrecorded).Int64("acl_entries", with).
			Msg("entries whose access control the snapshot cannot hold (an NFSv4 ACL naming users or groups, or an unreadable ACL) are served to their owners only")
	case unrecorded > 0:
		log.Info().Int64("entries", unrecorded).Int64("acl_entries", with).
			Msg("entries carry access control the snapshot cannot hold; served with their mode bits, to the mounting user only (no --allow-other)")
	case with > 0:
		log.Info().Int64("acl_entries", with).Msg("the kernel enforces the source's POSIX ACLs")
	}
}
