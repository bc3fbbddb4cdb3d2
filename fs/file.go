package fs

import (
	"context"
	"errors"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileHandle is one open of a regular file through the mount.
type fileHandle struct {
	n *node
	r Reader
}

var (
	_ gofs.NodeReader          = (*node)(nil)
	_ gofs.NodeFlusher         = (*node)(nil)
	_ gofs.FileReader          = (*fileHandle)(nil)
	_ gofs.FileReleaser        = (*fileHandle)(nil)
	_ gofs.FilePassthroughFder = (*fileHandle)(nil)
)

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if n.t.m.kernelOpens.Load() {
		// The kernel takes ENOSYS as "open every file yourself, from now
		// on, without asking": no OPEN or RELEASE round trip again on this
		// mount. MS_RDONLY and default_permissions still guard the open.
		return nil, 0, syscall.ENOSYS
	}
	if !n.t.snap.Attr(n.idx).IsRegular() {
		return nil, 0, syscall.EINVAL
	}
	r, err := n.t.content.Open(n.idx)
	if err != nil {
		return nil, 0, n.t.m.fail("open", n.idx, 0, 0, err)
	}
	n.t.m.heardOpen(n.idx)
	// The snapshot pins the file's size and mtime, so pages cached by an
	// earlier open are still right: keep them. Nothing is ever written, so
	// close needs no FLUSH round trip either.
	return &fileHandle{n: n, r: r}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return f.n.t.read(ctx, f.r, f.n.idx, dest, off, nil)
}

// Read serves reads that come without a handle of ours: in kernel-open
// mode every read does, and is served through the file's held Reader.
func (n *node) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if f, ok := fh.(*fileHandle); ok {
		return f.Read(ctx, dest, off)
	}
	if !n.t.snap.Attr(n.idx).IsRegular() {
		return nil, syscall.EINVAL
	}
	e, err := n.t.m.held.acquire(n.idx)
	if err != nil {
		return nil, n.t.m.fail("open", n.idx, off, len(dest), err)
	}
	return n.t.read(ctx, e.r, n.idx, dest, off, func() { n.t.m.held.release(e) })
}

// read serves one read through r. done, if set, runs once the reply no
// longer needs r: after the splice of a cached range, or before returning.
func (t *tree) read(ctx context.Context, r Reader, idx uint32, dest []byte, off int64, done func()) (fuse.ReadResult, syscall.Errno) {
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
func (n *node) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

func (f *fileHandle) Release(ctx context.Context) syscall.Errno {
	if err := f.r.Close(); err != nil && !errors.Is(err, context.Canceled) {
		f.n.t.m.log.Warn().Err(err).Str("path", f.n.t.snap.Path(f.n.idx)).Msg("close of source file failed")
	}
	return 0
}

// PassthroughFd lets go-fuse register the cache file with the kernel when
// the whole file is cached; go-fuse turns passthrough off for the mount if
// the kernel refuses (not root, or no CAP_PASSTHROUGH). go-fuse asks only
// when no passthrough handle of the inode is open; the inode's io mode (see
// node.ioMode) keeps passthrough and ordinary opens from ever mixing.
func (f *fileHandle) PassthroughFd() (int, bool) {
	pr, ok := f.r.(PassthroughReader)
	if !ok || !f.n.t.m.passthrough {
		return 0, false
	}
	n := f.n
	for {
		switch n.ioMode.Load() {
		case ioPlain:
			return 0, false
		case ioPassthrough:
			if fd, ok := pr.PassthroughFd(); ok {
				return fd, true
			}
			// No longer complete (evicted while closed, or the cache
			// disk failed): this open will be an ordinary one. go-fuse
			// asks only when no passthrough open of the inode is left,
			// so the switch is safe now; switching back later, while
			// this open may still be held, would not be.
			n.ioMode.Store(ioPlain)
			return 0, false
		}
		fd, ok := pr.PassthroughFd()
		mode := ioPlain
		if ok {
			mode = ioPassthrough
		}
		if n.ioMode.CompareAndSwap(ioUndecided, mode) {
			return fd, ok
		}
	}
}
