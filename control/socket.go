package control

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cachefs/cachefs/privdir"
	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest name bind and connect take for a unix
// socket: a sockaddr_un's path field, less its NUL. A cache directory deep
// in a job's TMPDIR easily passes it.
var maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// socketName returns a name of the socket at path that bind and connect
// accept, and release, to call once the socket is bound or connected. A
// path too long for a sockaddr_un is reached through /proc/self/fd of its
// directory, opened without following a symlink in its last component and
// checked to be a directory of the effective uid's: the name stays short
// at any depth, and it cannot lead into a directory another user made.
func socketName(path string) (name string, release func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	dir := filepath.Dir(path)
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return "", nil, &os.PathError{Op: "fstat", Path: dir, Err: err}
	}
	if st.Uid != uint32(os.Geteuid()) {
		unix.Close(fd)
		return "", nil, fmt.Errorf("%s is owned by %s, not by you", dir, privdir.Owner(st.Uid))
	}
	name = "/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path)
	if len(name) > maxSocketPath {
		unix.Close(fd)
		return "", nil, fmt.Errorf("socket name %q is too long", filepath.Base(path))
	}
	return name, func() { unix.Close(fd) }, nil
}
