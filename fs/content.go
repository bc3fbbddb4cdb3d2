package fs

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/cachefs/cachefs/snapshot"
	"golang.org/x/sys/unix"
)

// Content supplies the bytes of regular files, by snapshot index.
type Content interface {
	// Open prepares to read entry idx. It should not touch the source: a
	// file opened and closed unread must cost the source nothing.
	Open(idx uint32) (Reader, error)
}

// Reader reads one opened file. ReadAt returns fewer bytes than asked only at
// the end of the file.
type Reader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	Close() error
}

// DirectContent reads straight from the source, opening a source file on the
// first read and keeping the descriptor until the file is closed through the
// mount. It checks the file's identity once, on open, so a file replaced or
// rewritten since the snapshot fails with ErrChanged instead of serving bytes
// that disagree with the size the snapshot reported.
type DirectContent struct {
	Snap    *snapshot.Snapshot
	Source  string // absolute path of the source root
	RootDev uint64 // st_dev of the source root at snapshot time
}

// Open implements Content.
func (c *DirectContent) Open(idx uint32) (Reader, error) {
	return &directReader{c: c, idx: idx}, nil
}

type directReader struct {
	c    *DirectContent
	idx  uint32
	once sync.Once
	f    *os.File
	err  error
}

func (r *directReader) open() {
	p := filepath.Join(r.c.Source, r.c.Snap.Path(r.idx))
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP {
			err = fmt.Errorf("%s: %w", p, ErrChanged)
		} else {
			err = &os.PathError{Op: "open", Path: p, Err: err}
		}
		r.err = err
		return
	}
	f := os.NewFile(uintptr(fd), p)
	if err := CheckIdentity(f, r.c.Snap.Attr(r.idx), r.c.RootDev); err != nil {
		f.Close()
		r.err = err
		return
	}
	r.f = f
}

// CheckIdentity compares an open source file with its snapshot entry. The
// fstat it does is on a descriptor already open, which a shared filesystem
// answers from the open's own reply in the common case.
func CheckIdentity(f *os.File, want snapshot.Attr, rootDev uint64) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return &os.PathError{Op: "fstat", Path: f.Name(), Err: err}
	}
	got := snapshot.MixIno(st.Dev, st.Ino, rootDev)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || got != want.Ino || st.Size != want.Size || st.Mtim.Nano() != want.Mtime {
		return fmt.Errorf("%s: %w (snapshot ino %d size %d mtime %d, now ino %d size %d mtime %d)",
			f.Name(), ErrChanged, want.Ino, want.Size, want.Mtime, got, st.Size, st.Mtim.Nano())
	}
	return nil
}

func (r *directReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	r.once.Do(r.open)
	if r.err != nil {
		return 0, r.err
	}
	n, err := r.f.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	return n, err
}

func (r *directReader) Close() error {
	// Going through once orders Close after an open still in progress and
	// stops a late ReadAt from opening the source again.
	r.once.Do(func() { r.err = os.ErrClosed })
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
