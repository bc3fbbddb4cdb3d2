package push

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"sync"

	"github.com/cachefs/cachefs/snapshot"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Run pushes o.Upper to o.Source. The error is nil when every entry was
// decided, even if some were conflicts or failed (see Result); it is set
// when the push could not go on: SOURCE is read-only, the context ended,
// or a root could not be opened.
func Run(ctx context.Context, o Options) (*Result, error) {
	res := &Result{DryRun: o.DryRun}
	o.Exclude = append(append([]string(nil), DefaultExcludes...), o.Exclude...)
	root, err := unix.Open(o.Source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return res, fmt.Errorf("push: source %s: %w", o.Source, err)
	}
	defer unix.Close(root)
	up, err := unix.Open(o.Upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return res, fmt.Errorf("push: upper layer %s: %w", o.Upper, err)
	}
	defer unix.Close(up)
	p := &pusher{o: o, res: res}
	err = p.dir(ctx, up, root, "", 0, o.Base != nil)
	sort.SliceStable(res.Entries, func(i, j int) bool { return res.Entries[i].Path < res.Entries[j].Path })
	return res, err
}

// fileWorkers is how many files of one directory are copied at once.
const fileWorkers = 16

type pusher struct {
	o   Options
	mu  sync.Mutex // guards res
	res *Result
}

// upperEntry is one name in a directory of the upper layer.
type upperEntry struct {
	name string
	st   unix.Stat_t
}

// dir pushes the upper directory up into the target directory tfd (-1 in
// a dry run below a directory that does not exist yet). base is the
// directory's snapshot entry when inBase.
func (p *pusher) dir(ctx context.Context, up, tfd int, rel string, base uint32, inBase bool) error {
	ents, err := readUpper(up)
	if err != nil {
		p.note(Entry{Path: rel, Action: Failed, Error: err.Error()})
		return nil
	}
	var subdirs []upperEntry
	if err := p.locked(tfd, func() error {
		// Files are independent of each other: copying several at once
		// overlaps their fsyncs, which dominate a push of small files.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(fileWorkers)
		for _, e := range ents {
			if e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
				subdirs = append(subdirs, e)
				continue
			}
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				return p.entry(up, tfd, rel, e, base, inBase)
			})
		}
		return g.Wait()
	}); err != nil {
		return err
	}
	for _, e := range subdirs {
		if err := p.subdir(ctx, up, tfd, rel, e, base, inBase); err != nil {
			return err
		}
	}
	return nil
}

// locked runs f holding the target directory's flock, after removing
// temporaries a killed push left there, and syncs the directory after.
// flock serialises pushes from this host and, on file systems that pass
// it on, from others.
func (p *pusher) locked(tfd int, f func() error) error {
	if tfd < 0 || p.o.DryRun {
		return f()
	}
	for {
		err := unix.Flock(tfd, unix.LOCK_EX)
		if err != unix.EINTR {
			break // a file system without flock still gets NOREPLACE renames
		}
	}
	// An unlock that fails leaves the lock to go when tfd is closed.
	defer func() { _ = unix.Flock(tfd, unix.LOCK_UN) }()
	p.cleanTemps(tfd)
	err := f()
	_ = unix.Fsync(tfd)
	return err
}

// cleanTemps removes temporaries of earlier pushes. Under the directory's
// lock no other push is writing one.
func (p *pusher) cleanTemps(tfd int) {
	d, err := unix.Dup(tfd)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(d), "target")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return
	}
	names, _ := f.Readdirnames(-1)
	for _, n := range names {
		if len(n) > len(TempPrefix) && n[:len(TempPrefix)] == TempPrefix {
			var st unix.Stat_t
			if unix.Fstatat(tfd, n, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Uid == uint32(os.Geteuid()) {
				_ = unix.Unlinkat(tfd, n, 0)
			}
		}
	}
}

// readUpper lists an upper directory with each entry's lstat, in name order.
func readUpper(up int) ([]upperEntry, error) {
	d, err := unix.Dup(up)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(d), "upper")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]upperEntry, 0, len(names))
	for _, n := range names {
		e := upperEntry{name: n}
		if err := unix.Fstatat(up, n, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // gone since the listing
		}
		out = append(out, e)
	}
	return out, nil
}

func (p *pusher) note(e Entry) {
	switch e.Action {
	case Conflict, Failed:
		p.o.Logger.Warn().Str("path", e.Path).Str("action", string(e.Action)).Msg(e.Error)
	case NotPushed:
		p.o.Logger.Info().Str("path", e.Path).Msg("deletion not pushed (--delete pushes it)")
	default:
		p.o.Logger.Debug().Str("path", e.Path).Str("action", string(e.Action)).Msg("push")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.res.add(e)
	if p.o.Progress != nil {
		p.o.Progress(*p.res)
	}
}

// baseAttr returns the snapshot's entry for name in dir base, if any.
func (p *pusher) baseAttr(base uint32, inBase bool, name string) (uint32, *snapshot.Attr) {
	if !inBase {
		return 0, nil
	}
	i, ok := p.o.Base.Lookup(base, name)
	if !ok {
		return 0, nil
	}
	a := p.o.Base.Attr(i)
	return i, &a
}

// entry pushes one non-directory: a file, a symlink or a whiteout.
func (p *pusher) entry(up, tfd int, dirRel string, e upperEntry, base uint32, inBase bool) error {
	rel := path.Join(dirRel, e.name)
	if excluded(p.o.Exclude, rel) {
		p.note(Entry{Path: rel, Action: Excluded})
		return nil
	}
	bi, ba := p.baseAttr(base, inBase, e.name)
	var err error
	var ent Entry
	switch {
	case isWhiteout(&e.st):
		ent, err = p.whiteout(tfd, rel, e.name, ba)
	case e.st.Mode&unix.S_IFMT == unix.S_IFREG:
		ent, err = p.file(up, tfd, rel, e, ba)
	case e.st.Mode&unix.S_IFMT == unix.S_IFLNK:
		ent, err = p.symlink(up, tfd, rel, e, bi, ba)
	default:
		ent = Entry{Path: rel, Action: Failed, Error: "not a file, directory or symlink: not pushed"}
	}
	if errors.Is(err, unix.EROFS) {
		return ErrReadOnly
	}
	if err != nil {
		ent = Entry{Path: rel, Action: Failed, Error: err.Error()}
	}
	if ent.Action != "" {
		p.note(ent)
	}
	return nil
}

// isWhiteout reports overlayfs's mark of a deleted name.
func isWhiteout(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0
}

// current returns the target's lstat, or ok false if it has none.
func current(tfd int, name string) (st unix.Stat_t, ok bool, err error) {
	if tfd < 0 {
		return st, false, nil
	}
	err = unix.Fstatat(tfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return st, false, nil
	}
	return st, err == nil, err
}

// changed says why the target differs from the snapshot's entry, or ""
// if it is the entry the snapshot saw.
func changed(ba *snapshot.Attr, cur *unix.Stat_t, exists bool) string {
	switch {
	case ba == nil && exists:
		return "created on the source since the snapshot"
	case ba == nil:
		return ""
	case !exists:
		return "removed on the source since the snapshot"
	case cur.Ino != ba.Ino || cur.Mode&unix.S_IFMT != ba.Mode&snapshot.ModeType:
		return "replaced on the source since the snapshot"
	case ba.IsRegular() && (cur.Size != ba.Size || cur.Mtim.Nano() != ba.Mtime):
		return "modified on the source since the snapshot"
	}
	return ""
}

func (p *pusher) file(up, tfd int, rel string, e upperEntry, ba *snapshot.Attr) (Entry, error) {
	// A copy-up keeps the lower file's size and mtime, so a file that was
	// only opened for writing looks like the snapshot's. Timestamps are
	// coarse (a jiffy), so a rewrite can look so too: compare the bytes.
	if ba != nil && ba.IsRegular() && e.st.Size == ba.Size && e.st.Mtim.Nano() == ba.Mtime && sameBytes(up, tfd, e.name) {
		return Entry{Path: rel, Action: Unchanged}, nil
	}
	cur, exists, err := current(tfd, e.name)
	if err != nil {
		return Entry{}, err
	}
	if exists && sameFile(&cur, &e.st) {
		return Entry{Path: rel, Action: Unchanged}, nil // pushed before
	}
	if why := changed(ba, &cur, exists); why != "" && !p.o.Force {
		// Two jobs that made the same file (a sidecar repaired the same
		// way) do not conflict.
		if cur.Mode&unix.S_IFMT == unix.S_IFREG && cur.Size == e.st.Size && sameBytes(up, tfd, e.name) {
			return Entry{Path: rel, Action: Unchanged}, nil
		}
		return Entry{Path: rel, Action: Conflict, Error: why + "; not overwritten (--force overwrites)"}, nil
	}
	if exists && cur.Mode&unix.S_IFMT == unix.S_IFDIR {
		return Entry{Path: rel, Action: Conflict, Error: "a directory on the source; not replaced"}, nil
	}
	if p.o.DryRun {
		return Entry{Path: rel, Action: Copied, Bytes: e.st.Size}, nil
	}
	n, err := p.copyFile(up, tfd, e, exists)
	if errors.Is(err, unix.EEXIST) {
		return Entry{Path: rel, Action: Conflict, Error: "created on the source during the push; not overwritten"}, nil
	}
	return Entry{Path: rel, Action: Copied, Bytes: n}, err
}

// sameFile is rsync's quick check: a push gives each copy its upper
// file's mtime, so a target of the same size and mtime (to the
// nanosecond) is taken to be that file pushed before.
func sameFile(cur, up *unix.Stat_t) bool {
	return cur.Mode&unix.S_IFMT == unix.S_IFREG && cur.Size == up.Size && cur.Mtim == up.Mtim
}

// sameBytes reports whether name holds the same bytes in the upper
// directory and the target directory. Any error says no: the push then
// decides as for a changed file.
func sameBytes(up, tfd int, name string) bool {
	if tfd < 0 {
		return false
	}
	a, err := openFile(up, name)
	if err != nil {
		return false
	}
	defer a.Close()
	b, err := openFile(tfd, name)
	if err != nil {
		return false
	}
	defer b.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(a, ba)
		nb, eb := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return end(ea) && end(eb)
		}
	}
}

func end(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

// openFile opens a regular file in dirfd without following a symlink or
// waiting on a FIFO.
func openFile(dirfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", name, ErrUnsafe)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// copyFile writes the upper file to a temporary in tfd and renames it to
// its name: over the existing target if replace, else only if the name is
// still free.
func (p *pusher) copyFile(up, tfd int, e upperEntry, replace bool) (int64, error) {
	in, err := openFile(up, e.name)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(in.Fd()), &st); err != nil {
		return 0, err
	}
	tmp, out, err := createTemp(tfd)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = finish(out, &st)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rename(tfd, tmp, e.name, replace)
	}
	if err != nil {
		_ = unix.Unlinkat(tfd, tmp, 0)
	}
	return n, err
}

// createTemp creates a new temporary in tfd, O_EXCL so that nothing
// planted at the name is opened.
func createTemp(tfd int) (string, *os.File, error) {
	for range 10 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		name := TempPrefix + hex.EncodeToString(b[:])
		fd, err := unix.Openat(tfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return name, os.NewFile(uintptr(fd), name), nil
	}
	return "", nil, unix.EEXIST
}

// finish gives the copy the upper file's mode (less set-id bits), owner
// (when root: the writer's, as `rsync -a` would) and mtime, and makes it
// durable.
func finish(out *os.File, st *unix.Stat_t) error {
	fd := int(out.Fd())
	if os.Geteuid() == 0 {
		if err := unix.Fchown(fd, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	// No set-id bits: a root push lands files other users wrote through
	// the view, and must not hand out their privileges in SOURCE.
	if err := unix.Fchmod(fd, st.Mode&0o1777); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
		return err
	}
	return out.Sync()
}

func rename(tfd int, tmp, name string, replace bool) error {
	if replace {
		return unix.Renameat(tfd, tmp, tfd, name)
	}
	return unix.Renameat2(tfd, tmp, tfd, name, unix.RENAME_NOREPLACE)
}

func (p *pusher) symlink(up, tfd int, rel string, e upperEntry, bi uint32, ba *snapshot.Attr) (Entry, error) {
	target, err := readlinkat(up, e.name)
	if err != nil {
		return Entry{}, err
	}
	if ba != nil && ba.Mode&snapshot.ModeType == snapshot.ModeLink && p.o.Base.Target(bi) == target {
		return Entry{Path: rel, Action: Unchanged}, nil
	}
	cur, exists, err := current(tfd, e.name)
	if err != nil {
		return Entry{}, err
	}
	if exists && cur.Mode&unix.S_IFMT == unix.S_IFLNK {
		if t, err := readlinkat(tfd, e.name); err == nil && t == target {
			return Entry{Path: rel, Action: Unchanged}, nil // pushed before
		}
	}
	if why := changed(ba, &cur, exists); why != "" && !p.o.Force {
		return Entry{Path: rel, Action: Conflict, Error: why + "; not overwritten (--force overwrites)"}, nil
	}
	if exists && cur.Mode&unix.S_IFMT == unix.S_IFDIR {
		return Entry{Path: rel, Action: Conflict, Error: "a directory on the source; not replaced"}, nil
	}
	if p.o.DryRun {
		return Entry{Path: rel, Action: Linked}, nil
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	tmp := TempPrefix + hex.EncodeToString(b[:])
	if err := unix.Symlinkat(target, tfd, tmp); err != nil {
		return Entry{}, err
	}
	if err := rename(tfd, tmp, e.name, exists); err != nil {
		_ = unix.Unlinkat(tfd, tmp, 0)
		if err == unix.EEXIST {
			return Entry{Path: rel, Action: Conflict, Error: "created on the source during the push; not overwritten"}, nil
		}
		return Entry{}, err
	}
	return Entry{Path: rel, Action: Linked}, nil
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// whiteout pushes a deletion, only with Delete and only of an entry
// SOURCE still holds as the snapshot saw it.
func (p *pusher) whiteout(tfd int, rel, name string, ba *snapshot.Attr) (Entry, error) {
	if ba == nil {
		return Entry{}, nil // deleted what the snapshot never had
	}
	if !p.o.Delete {
		return Entry{Path: rel, Action: NotPushed}, nil
	}
	cur, exists, err := current(tfd, name)
	if err != nil {
		return Entry{}, err
	}
	if !exists {
		return Entry{Path: rel, Action: Unchanged}, nil
	}
	if why := changed(ba, &cur, exists); why != "" && !p.o.Force {
		return Entry{Path: rel, Action: Conflict, Error: why + "; not deleted"}, nil
	}
	if cur.Mode&unix.S_IFMT == unix.S_IFDIR {
		return Entry{Path: rel, Action: NotPushed, Error: "directories are not deleted"}, nil
	}
	if !p.o.DryRun {
		if err := unix.Unlinkat(tfd, name, 0); err != nil {
			return Entry{}, err
		}
	}
	return Entry{Path: rel, Action: Deleted}, nil
}
