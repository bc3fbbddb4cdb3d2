package control

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// A cache directory deep in a job's TMPDIR gives a socket path longer
// than a sockaddr_un holds; the daemon must still listen there and the
// client reach it.
func TestServeAndDialLongPath(t *testing.T) {
	dir := t.TempDir()
	for len(dir) <= maxSocketPath {
		dir = filepath.Join(dir, strings.Repeat("d", 40))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "control.sock")
	stop, err := Serve(sock, fakeDaemon{}, zerolog.Nop())
	if err != nil {
		t.Fatalf("Serve(%d-byte path): %v", len(sock), err)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	r, err := Dial(sock).Status(context.Background())
	if err != nil || r.Pid != 42 {
		t.Fatalf("Status = %+v, %v", r, err)
	}
	stop()
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left after stop: %v", err)
	}
}

// A long path leads only into a directory of the user's own, as the
// short one does through the cache directory's checks.
func TestLongPathRefusesSymlinkedDir(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, strings.Repeat("l", maxSocketPath))
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Serve(filepath.Join(link, "control.sock"), fakeDaemon{}, zerolog.Nop()); err == nil {
		t.Fatal("Serve followed a symlink to the socket's directory")
	}
}
