package fusefs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

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
