package blockcache

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cachefs/cachefs/snapshot"
	"golang.org/x/sys/unix"
)

// DirSource opens files below a source directory and checks each against
// its Key with one fstat of the open descriptor.
type DirSource struct {
	Root    string
	RootDev uint64 // st_dev of Root when the snapshot was taken
}

// Open implements Source.
func (d DirSource) Open(key Key) (SourceFile, error) {
	p := filepath.Join(d.Root, key.Path)
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		// The runtime's signals interrupt slow opens on network sources.
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if err == unix.ELOOP {
			return nil, fmt.Errorf("%s is now a symlink: %w", p, ErrChanged)
		}
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	for err == unix.EINTR {
		err = unix.Fstat(fd, &st)
	}
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "fstat", Path: p, Err: err}
	}
	ino := snapshot.MixIno(st.Dev, st.Ino, d.RootDev)
	if st.Mode&unix.S_IFMT != unix.S_IFREG || ino != key.Ino || st.Size != key.Size || st.Mtim.Nano() != key.Mtime {
		f.Close()
		return nil, fmt.Errorf("%s: snapshot has ino %d size %d mtime %d, source now ino %d size %d mtime %d: %w",
			p, key.Ino, key.Size, key.Mtime, ino, st.Size, st.Mtim.Nano(), ErrChanged)
	}
	return f, nil
}
