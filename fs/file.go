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
	_ gofs.FileReader          = (*fileHandle)(nil)
	_ gofs.FileReleaser        = (*fileHandle)(nil)
	_ gofs.FilePassthroughFder = (*fileHandle)(nil)
)

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	if !n.t.snap.Attr(n.idx).IsRegular() {
		return nil, 0, syscall.EINVAL
	}
	r, err := n.t.content.Open(n.idx)
	if err != nil {
		return nil, 0, n.t.m.fail("open", n.idx, 0, 0, err)
	}
	n.t.m.stats.Opens.Add(1)
	if n.t.m.onOpen != nil {
		n.t.m.onOpen(n.idx)
	}
	// The snapshot pins the file's size and mtime, so pages cached by an
	// earlier open are still right: keep them. Nothing is ever written, so
	// close needs no FLUSH round trip either.
	return &fileHandle{n: n, r: r}, fuse.FOPEN_KEEP_CACHE | fuse.FOPEN_NOFLUSH, 0
}

func (f *fileHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if fr, ok := f.r.(FdReader); ok {
		size := f.n.t.snap.Attr(f.n.idx).Size
		if off >= size {
			return fuse.ReadResultData(nil), 0
		}
		n := int(min(int64(len(dest)), size-off))
		if fd, ok := fr.CachedFd(off, n); ok {
			f.n.t.m.stats.BytesServed.Add(int64(n))
			return fuse.ReadResultFd(fd, off, n), 0
		}
	}
	got, err := f.r.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, f.n.t.m.fail("read", f.n.idx, off, len(dest), err)
	}
	f.n.t.m.stats.BytesServed.Add(int64(got))
	return fuse.ReadResultData(dest[:got]), 0
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
			return pr.PassthroughFd()
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
