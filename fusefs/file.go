package fusefs

import (
	"context"
	"errors"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileTable holds the files opened with a handle of ours (not in
// kernel-open mode) and the passthrough backing files registered for
// them.
//
// Lock order: fileTable.mu only; Readers are opened and closed outside it.
type fileTable struct {
	mu   sync.Mutex
	next uint64
	open map[uint64]*openFile
	// backing is the kernel's backing file of each entry with a
	// passthrough open, shared by all of that entry's passthrough opens.
	backing map[uint32]*backing
	// noBacking is set once the kernel refuses a backing file (not root,
	// or no CAP_PASSTHROUGH): passthrough is then off for the mount.
	noBacking bool
}

type openFile struct {
	idx    uint32
	r      Reader
	backed bool
}

type backing struct {
	id   int32
	refs int
}

func (t *rawFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	idx, ok := t.entry(in.NodeId)
	if !ok {
		return errStale
	}
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.Status(syscall.EROFS)
	}
	if t.m.kernelOpens.Load() {
		// The kernel takes ENOSYS as "open every file yourself, from now
		// on, without asking": no OPEN or RELEASE round trip again on this
		// mount. MS_RDONLY and default_permissions still guard the open.
		return fuse.ENOSYS
	}
	if !t.snap.Attr(idx).IsRegular() {
		return fuse.EINVAL
	}
	r, err := t.content.Open(idx)
	if err != nil {
		return fuse.Status(t.m.fail("open", idx, 0, 0, err))
	}
	t.m.heardOpen(idx)
	f := &openFile{idx: idx, r: r}
	// The snapshot pins the file's size and mtime, so pages cached by an
	// earlier open are still right: keep them. Nothing is ever written, so
	// close needs no FLUSH round trip either.
	out.OpenFlags = fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH
	t.files.mu.Lock()
	defer t.files.mu.Unlock()
	t.files.next++
	out.Fh = t.files.next
	t.files.open[out.Fh] = f
	if id, ok := t.backingFor(f); ok {
		out.BackingID = id
		out.OpenFlags |= fuse.FOPEN_PASSTHROUGH
		out.OpenFlags &^= fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// backingFor registers f's cache file with the kernel for passthrough, or
// shares the one an open of the same entry registered. Called with
// files.mu held.
func (t *rawFS) backingFor(f *openFile) (int32, bool) {
	if t.io == nil || t.files.noBacking {
		return 0, false
	}
	if b := t.files.backing[f.idx]; b != nil {
		b.refs++
		f.backed = true
		return b.id, true
	}
	fd, ok := t.passthroughFd(f)
	if !ok {
		return 0, false
	}
	id, errno := t.srv.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		t.files.noBacking = true
		t.m.log.Debug().Str("errno", errno.Error()).Msg("the kernel refused a passthrough backing file; fully cached files are spliced instead")
		return 0, false
	}
	t.files.backing[f.idx] = &backing{id: id, refs: 1}
	f.backed = true
	return id, true
}

// passthroughFd decides whether f's entry is read in passthrough, which
// is decided at the first open of the entry in this mount and kept: the
// kernel fails an open with EIO when it would mix passthrough and ordinary
// opens of one inode, and it drops an ordinary open's claim only some time
// after close, so counting open handles in the daemon races with it. A
// file complete at its first open is read in passthrough from then on; one
// that is not stays on the page cache and splice path for the rest of the
// mount. Called with files.mu held and no passthrough open of the entry.
func (t *rawFS) passthroughFd(f *openFile) (int, bool) {
	pr, ok := f.r.(PassthroughReader)
	if !ok {
		return 0, false
	}
	switch t.io.load(f.idx) {
	case ioPlain:
		return 0, false
	case ioPassthrough:
		if fd, ok := pr.PassthroughFd(); ok {
			return fd, true
		}
		// No longer complete (evicted while closed, or the cache disk
		// failed): no passthrough open of the entry is left, so the
		// switch to ordinary opens is safe now; switching back later,
		// while this open may still be held, would not be.
		t.io.demote(f.idx)
		return 0, false
	}
	fd, ok := pr.PassthroughFd()
	mode := ioPlain
	if ok {
		mode = ioPassthrough
	}
	if t.io.decide(f.idx, mode) != ioPassthrough || !ok {
		return 0, false
	}
	return fd, true
}

func (t *rawFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	t.files.mu.Lock()
	f := t.files.open[in.Fh]
	delete(t.files.open, in.Fh)
	if f != nil && f.backed {
		if b := t.files.backing[f.idx]; b != nil {
			if b.refs--; b.refs == 0 {
				delete(t.files.backing, f.idx)
				if errno := t.srv.UnregisterBackingFd(b.id); errno != 0 {
					t.m.log.Warn().Uint32("entry", f.idx).Str("errno", errno.Error()).Msg("unregistering a passthrough backing file failed")
				}
			}
		}
	}
	t.files.mu.Unlock()
	if f == nil {
		return
	}
	if err := f.r.Close(); err != nil && !errors.Is(err, context.Canceled) {
		t.m.log.Warn().Err(err).Str("path", t.snap.Path(f.idx)).Msg("close of source file failed")
	}
}

// Read serves a read through its handle, or, for files the kernel opened
// itself (no handle of ours), through the file's held Reader.
func (t *rawFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	idx, ok := t.entry(in.NodeId)
	if !ok {
		return nil, errStale
	}
	ctx := &fuse.Context{Caller: in.Caller, Cancel: cancel}
	off := int64(in.Offset)
	if in.Fh != 0 {
		t.files.mu.Lock()
		f := t.files.open[in.Fh]
		t.files.mu.Unlock()
		if f == nil || f.idx != idx {
			return nil, fuse.EBADF
		}
		res, e := t.read(ctx, f.r, idx, buf, off, nil)
		return res, fuse.Status(e)
	}
	if !t.snap.Attr(idx).IsRegular() {
		return nil, fuse.EINVAL
	}
	h, err := t.m.held.acquire(idx)
	if err != nil {
		return nil, fuse.Status(t.m.fail("open", idx, off, len(buf), err))
	}
	res, e := t.read(ctx, h.r, idx, buf, off, func() { t.m.held.release(h) })
	return res, fuse.Status(e)
}

// read serves one read through r. done, if set, runs once the reply no
// longer needs r: after the splice of a cached range, or before returning.
func (t *rawFS) read(ctx context.Context, r Reader, idx uint32, dest []byte, off int64, done func()) (fuse.ReadResult, syscall.Errno) {
	if fr, ok := r.(FdReader); ok {
		size := t.snap.Attr(idx).Size
		if off >= size {
			if done != nil {
				done()
			}
			return fuse.ReadResultData(nil), 0
		}
		n := int(min(int64(len(dest)), size-off))
		if fd, ok := fr.CachedFd(off, n); ok {
			t.m.stats.BytesServed.Add(int64(n))
			if done == nil {
				return fuse.ReadResultFd(fd, off, n), 0
			}
			return &splicedResult{fd: fd, off: off, n: n, done: done}, 0
		}
	}
	got, err := r.ReadAt(ctx, dest, off)
	if done != nil {
		done()
	}
	if err != nil {
		return nil, t.m.fail("read", idx, off, len(dest), err)
	}
	t.m.stats.BytesServed.Add(int64(got))
	return fuse.ReadResultData(dest[:got]), 0
}

// Flush answers ENOSYS, which the kernel remembers for the mount: nothing
// is ever written, so no close needs a round trip. (Handles of ours carry
// FOPEN_NOFLUSH anyway; files the kernel opens itself carry no flags.)
func (t *rawFS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}
