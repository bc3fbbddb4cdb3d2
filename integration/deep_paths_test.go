package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachefs/cachefs/control"
)

// A job's TMPDIR can sit deep enough that the default cache directory's
// control socket has a path longer than a unix socket address holds
// (about 107 bytes). status and warm must reach the daemon all the same.
func TestControlSocketInDeepTmpdir(t *testing.T) {
	e := newEnv(t)
	deep := e.tmp
	for len(deep) < 120 {
		deep = filepath.Join(deep, strings.Repeat("n", 30))
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.tmp = deep // TMPDIR of the commands: the default cache directory goes below it
	pid, _ := e.mount(src, mnt, "--prefetch=off")
	defer cleanupMount(t, mnt, pid)
	st, err := e.status(mnt)
	if err != nil {
		t.Fatal(err)
	}
	if sock := filepath.Join(st.CacheDir, "control.sock"); len(sock) <= 107 {
		t.Fatalf("the socket path %s is short enough for any sockaddr_un: the test proves nothing", sock)
	}
	if r := e.run("warm", mnt); r.code != 0 {
		t.Fatalf("cachefs warm exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	e.unmount(mnt)
}

// status runs `cachefs status --json MNT` and decodes its reply.
func (e *env) status(mnt string) (*control.StatusReply, error) {
	e.t.Helper()
	r := e.run("status", "--json", mnt)
	if r.code != 0 {
		return nil, fmt.Errorf("cachefs status exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	var st control.StatusReply
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		return nil, fmt.Errorf("status --json: %w: %q", err, r.stdout)
	}
	return &st, nil
}
