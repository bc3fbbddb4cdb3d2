package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/daemon"
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

// readyIn finds the one JSON object `--json` prints among the lines of
// out: the mount's readiness.
func readyIn(t *testing.T, out string) daemon.Ready {
	t.Helper()
	var objs []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			objs = append(objs, line)
		}
	}
	var r daemon.Ready
	if len(objs) != 1 {
		t.Fatalf("want one JSON object, got %d in %q", len(objs), out)
	}
	if err := json.Unmarshal([]byte(objs[0]), &r); err != nil || r.Schema != daemon.ReadySchema {
		t.Fatalf("%q: %v, schema %d; want schema %d", objs[0], err, r.Schema, daemon.ReadySchema)
	}
	return r
}

// cachefs run --json gives its mount's readiness as JSON on stderr, in
// place of the summary line, and leaves stdout to the command.
func TestRunJSON(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.run("run", "--json", src, mnt, "--", "cat", filepath.Join(mnt, "d", "f"))
	if r.code != 0 || r.stdout != "abc" {
		t.Fatalf("cachefs run --json exited %d with stdout %q, want 0 and the command's abc\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	ready := readyIn(t, r.stderr)
	if ready.Mountpoint != mnt || ready.Source != src || ready.Pid <= 0 || ready.Stats.Files != 1 || ready.Stats.Bytes != 3 || ready.CacheDir == "" {
		t.Errorf("readiness %+v: want mountpoint %s, source %s, a pid, 1 file of 3 bytes, a cache dir", ready, mnt, src)
	}
	if strings.Contains(r.stderr, "daemon pid") {
		t.Errorf("run --json printed the summary line too: %s", r.stderr)
	}
	if !waitGone(ready.Pid, 10*time.Second) {
		t.Errorf("daemon %d still running after cachefs run returned", ready.Pid)
	}
}
