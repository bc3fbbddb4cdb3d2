package fusefs

import "context"

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

// FdReader is a Reader that can hand out a descriptor holding a range
// already on local disk, so the reply is spliced, not copied.
type FdReader interface {
	CachedFd(off int64, n int) (fd uintptr, ok bool)
}

// PassthroughReader is a Reader whose whole file is on local disk; the
// kernel may then read the descriptor directly, bypassing this process.
type PassthroughReader interface {
	PassthroughFd() (fd int, ok bool)
}
