package fs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// forever is the kernel cache timeout for entries, attributes and negative
// lookups. The snapshot cannot change during a mount, so nothing the kernel
// caches can go stale; ten years is "never" while staying far from the
// overflow of the kernel's jiffies conversion.
const forever = 10 * 365 * 24 * time.Hour

// ErrMount wraps failures of the mount system call or of fusermount.
var ErrMount = errors.New("mount failed")

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
}

// Stats are counters a running mount keeps for status and unmount.
type Stats struct {
	Opens       atomic.Int64
	BytesServed atomic.Int64
	Errors      atomic.Int64
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
	// kernelOpens, once set, makes every open answer ENOSYS (see
	// KernelOpens); held then serves the reads, which come without handles.
	kernelOpens atomic.Bool
	held        *heldReaders
}

// New mounts cfg.Snapshot at mountpoint and returns once the kernel has
// confirmed the mount, so the caller may announce it as serving.
func New(mountpoint string, cfg Config) (*Mount, error) {
	m := &Mount{mountpoint: mountpoint, log: cfg.Logger, passthrough: cfg.Passthrough, onOpen: cfg.OnOpen}
	t := &tree{snap: cfg.Snapshot, content: cfg.Content, m: m}
	m.held = newHeldReaders(cfg.Content.Open, m.heardOpen, m.closeReader, heldIdle, heldMax)
	root := &node{t: t, idx: 0}
	timeout := forever
	fsName := cfg.FsName
	// fusermount passes fsname inside a comma-separated option list.
	if fsName == "" || strings.ContainsAny(fsName, ", \t\n\\") {
		fsName = "cachefs"
	}
	opts := &gofs.Options{
		MountOptions: fuse.MountOptions{
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
		},
		Logger:          cfg.GoFuseLog,
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &gofs.StableAttr{Ino: cfg.Snapshot.Ino(0)},
	}
	var srv *fuse.Server
	said, err := withFusermountSaid(func() (err error) {
		srv, err = gofs.Mount(mountpoint, root, opts)
		return err
	})
	if err != nil {
		m.held.close()
		// go-fuse reports a failed fusermount3 by its exit status only;
		// the reason is what fusermount3 printed.
		if said != "" {
			return nil, fmt.Errorf("fs: %w at %s: %s", ErrMount, mountpoint, said)
		}
		return nil, fmt.Errorf("fs: %w at %s: %s", ErrMount, mountpoint, strings.TrimSpace(err.Error()))
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

// stderrMu serializes the redirections of withFusermountSaid.
var stderrMu sync.Mutex

// withFusermountSaid runs mount with file descriptor 2, which go-fuse
// hands to fusermount3, pointed at a pipe, and returns the lines that
// fusermount3 wrote there, as one line. Descriptor 2 is swapped with
// dup2 rather than os.Stderr reassigned, which other goroutines read
// (zerolog does) and so would race; whatever anything writes to it in the
// meantime still reaches the real stderr (the daemon's log), only not
// the message.
func withFusermountSaid(mount func() error) (string, error) {
	stderrMu.Lock()
	defer stderrMu.Unlock()
	saved, err := unix.FcntlInt(2, unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return "", mount()
	}
	orig := os.NewFile(uintptr(saved), "stderr")
	defer orig.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return "", mount()
	}
	defer r.Close()
	if err := unix.Dup2(int(w.Fd()), 2); err != nil {
		w.Close()
		return "", mount()
	}
	var said bytes.Buffer
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(io.MultiWriter(orig, &said), r)
	}()
	merr := mount()
	_ = unix.Dup2(saved, 2)
	w.Close()
	// fusermount3 has exited when mount returns, so the copy ends at once;
	// the bound is for a helper that left a child holding the pipe.
	select {
	case <-copied:
	case <-time.After(time.Second):
		r.Close()
		<-copied
	}
	return fusermountLines(said.String()), merr
}

// fusermountLines picks fusermount3's lines out of s ("/usr/bin/fusermount3:
// failed to open /dev/fuse: Permission denied") and joins them with "; ",
// named by the program's base name.
func fusermountLines(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		prog, msg, ok := strings.Cut(strings.TrimSpace(l), ": ")
		if base := filepath.Base(prog); ok && strings.HasPrefix(base, "fusermount") {
			out = append(out, base+": "+msg)
		}
	}
	return strings.Join(out, "; ")
}
