package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/cachefs/cachefs/internal/ident"
	"github.com/cachefs/cachefs/internal/sysx"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// ErrSourceNotDir is returned by Walk when the source is not a directory.
var ErrSourceNotDir = errors.New("not a directory")

// Progress is updated by Walk as it goes; readers load the fields atomically.
type Progress struct {
	Entries atomic.Int64
	Dirs    atomic.Int64
	Bytes   atomic.Int64
	Errors  atomic.Int64
}

// WalkOptions tune Walk.
type WalkOptions struct {
	// Walkers is the number of metadata calls kept in flight. On a shared
	// filesystem each call is a round trip, so this, not CPU, sets the pace.
	Walkers int
	// Progress, if set, is updated while walking.
	Progress *Progress
	Logger   zerolog.Logger
	// ACLs makes the walk record POSIX ACLs, at one more metadata call per
	// entry (two per directory). Only a mount other users can reach needs
	// them: a private mount's daemon opens files with its user's own
	// credentials, so the source refuses it whatever an ACL refuses, and
	// root is not subject to ACLs at all. An index, which may later serve
	// a shared mount, needs them too.
	ACLs bool
}

// statBatch is how many names one task lstats. Large directories are split
// into batches so that a directory of 20,000 files is statted by every
// walker at once instead of by one.
const statBatch = 32

// Walk takes a snapshot of the tree at root. Unreadable directories and
// entries that vanish mid-walk are counted in Stats().Errors and logged; they
// never fail the walk. Only a root that cannot be opened as a directory, or a
// cancelled ctx, is an error.
func Walk(ctx context.Context, root string, opts WalkOptions) (*Snapshot, error) {
	if opts.Walkers <= 0 {
		opts.Walkers = 64
	}
	if opts.Progress == nil {
		opts.Progress = &Progress{}
	}
	var st unix.Stat_t
	if err := sysx.RetryEINTR(func() error { return unix.Stat(root, &st) }); err != nil {
		return nil, fmt.Errorf("snapshot: source %s: %w", root, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("snapshot: source %s: %w", root, ErrSourceNotDir)
	}
	var rootFd int
	err := sysx.RetryEINTR(func() (err error) {
		rootFd, err = unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: source %s: %w", root, err)
	}

	w := &walker{
		ctx:     ctx,
		opts:    opts,
		b:       NewBuilder(),
		rootDev: st.Dev,
	}
	w.cond = sync.NewCond(&w.mu)
	if opts.ACLs {
		w.b.SetACLsRecorded()
		w.b.SetRootACL(w.recordACL(unix.AT_FDCWD, "", root, &st, make([]byte, aclScratch)))
	}
	w.push(task{dir: &dirState{fd: rootFd, id: 0, path: root}})

	var wg sync.WaitGroup
	for i := 0; i < opts.Walkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run()
		}()
	}
	// Wake idle walkers when the caller gives up, so they see ctx.Err().
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.cond.Broadcast()
		w.mu.Unlock()
	})
	wg.Wait()
	stop()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("snapshot: walk of %s: %w", root, err)
	}
	opts.Progress.Entries.Add(1)
	opts.Progress.Dirs.Add(1)
	return w.b.Build(attrFromStat(&st, st.Dev))
}

// dirState is one directory whose children are being statted. The fd is
// shared by its batches and closed by the last one.
type dirState struct {
	fd      int
	id      int32
	path    string
	entries []Entry
	pending atomic.Int32
}

type task struct {
	dir   *dirState // list this directory (names == nil) or stat a batch of it
	names []string
	lo    int
}

type walker struct {
	ctx     context.Context
	opts    WalkOptions
	b       *Builder
	rootDev uint64

	caps xattrCaps

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []task
	running int
}

func (w *walker) push(t task) {
	w.mu.Lock()
	w.queue = append(w.queue, t)
	w.cond.Signal()
	w.mu.Unlock()
}

func (w *walker) run() {
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && w.running > 0 && w.ctx.Err() == nil {
			w.cond.Wait()
		}
		if len(w.queue) == 0 || w.ctx.Err() != nil {
			// Nothing queued and nobody running who could queue more: done.
			w.cond.Broadcast()
			w.mu.Unlock()
			w.drain()
			return
		}
		// LIFO keeps the set of open directory fds small: batches of a
		// directory finish before its subdirectories are opened.
		t := w.queue[len(w.queue)-1]
		w.queue = w.queue[:len(w.queue)-1]
		w.running++
		w.mu.Unlock()

		if t.names == nil {
			w.list(t.dir)
		} else {
			w.stat(t)
		}

		w.mu.Lock()
		w.running--
		if w.running == 0 && len(w.queue) == 0 {
			w.cond.Broadcast()
		}
		w.mu.Unlock()
	}
}

// drain closes the fds of tasks abandoned on cancellation.
func (w *walker) drain() {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	w.mu.Unlock()
	for _, t := range q {
		if t.dir.pending.Add(-1) <= 0 || t.names == nil {
			unix.Close(t.dir.fd)
		}
	}
}

func (w *walker) fail(path string, err error) {
	w.b.AddErrors(1)
	w.opts.Progress.Errors.Add(1)
	w.opts.Logger.Warn().Str("path", path).Err(err).Msg("walk: unreadable, shown as empty or left out")
}

// list reads the directory's names and queues stat batches for them.
func (w *walker) list(d *dirState) {
	names, err := readNames(d.fd)
	if err != nil {
		w.fail(d.path, err)
		unix.Close(d.fd)
		return
	}
	if len(names) == 0 {
		unix.Close(d.fd)
		return
	}
	d.entries = make([]Entry, len(names))
	batches := (len(names) + statBatch - 1) / statBatch
	d.pending.Store(int32(batches))
	for lo := 0; lo < len(names); lo += statBatch {
		hi := min(lo+statBatch, len(names))
		w.push(task{dir: d, names: names[lo:hi], lo: lo})
	}
}

// stat lstats a batch of a directory's names. The last batch to finish
// publishes the listing and queues the subdirectories.
func (w *walker) stat(t task) {
	d := t.dir
	var aclBuf []byte
	if w.opts.ACLs {
		aclBuf = make([]byte, aclScratch)
	}
	for k, name := range t.names {
		e := &d.entries[t.lo+k]
		e.Name = name
		e.Dir = NoDir
		var st unix.Stat_t
		if err := sysx.RetryEINTR(func() error { return unix.Fstatat(d.fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			// Vanished between readdir and stat: leave it out.
			e.Name = ""
			w.fail(filepath.Join(d.path, name), err)
			continue
		}
		e.Attr = attrFromStat(&st, w.rootDev)
		if w.opts.ACLs {
			e.ACL = w.recordACL(d.fd, d.path, name, &st, aclBuf)
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := readlinkat(d.fd, name, st.Size)
			if err != nil {
				w.fail(filepath.Join(d.path, name), err)
			}
			e.Target = target
			e.Attr.Size = int64(len(target))
		case unix.S_IFREG:
			w.opts.Progress.Bytes.Add(st.Size)
		}
		w.opts.Progress.Entries.Add(1)
	}
	if d.pending.Add(-1) != 0 {
		return
	}

	// Every batch is done: open subdirectories relative to this one, which
	// saves a path resolution per directory on the source.
	kept := d.entries[:0]
	for _, e := range d.entries {
		if e.Name == "" {
			continue
		}
		if e.Attr.IsDir() {
			w.opts.Progress.Dirs.Add(1)
			p := filepath.Join(d.path, e.Name)
			var fd int
			err := sysx.RetryEINTR(func() (err error) {
				fd, err = unix.Openat(d.fd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				return err
			})
			if err != nil {
				w.fail(p, err)
			} else {
				e.Dir = w.b.NewDir()
				w.push(task{dir: &dirState{fd: fd, id: e.Dir, path: p}})
			}
		}
		kept = append(kept, e)
	}
	unix.Close(d.fd)
	w.b.SetDir(d.id, kept)
}

func attrFromStat(st *unix.Stat_t, rootDev uint64) Attr {
	a := Attr{
		Mode:  st.Mode,
		Uid:   st.Uid,
		Gid:   st.Gid,
		Nlink: uint32(st.Nlink),
		Size:  st.Size,
		Mtime: st.Mtim.Nano(),
		Ctime: st.Ctim.Nano(),
		Atime: st.Atim.Nano(),
		Ino:   MixIno(st.Dev, st.Ino, rootDev),
	}
	if m := st.Mode & unix.S_IFMT; m == unix.S_IFCHR || m == unix.S_IFBLK {
		a.Rdev = st.Rdev
	}
	return a
}

// MixIno is the inode number a mount shows for (dev, ino); see package
// internal/ident.
func MixIno(dev, ino, rootDev uint64) uint64 { return ident.MixIno(dev, ino, rootDev) }

func readNames(fd int) ([]string, error) {
	buf := make([]byte, 64<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.SyscallError{Syscall: "getdents", Err: err}
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

func readlinkat(dirfd int, name string, size int64) (string, error) {
	n := int(size) + 1
	if n < 256 {
		n = 256
	}
	for {
		buf := make([]byte, n)
		var got int
		err := sysx.RetryEINTR(func() (err error) {
			got, err = unix.Readlinkat(dirfd, name, buf)
			return err
		})
		if err != nil {
			return "", &os.SyscallError{Syscall: "readlinkat", Err: err}
		}
		if got < n {
			return string(buf[:got]), nil
		}
		n *= 2
	}
}
