package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnprivilegedMount(t *testing.T) {
	userFUSE(t)
	_, cred := newUser(t, "unpriv")
	base := traversableDir(t, "cachefs-unpriv-")
	src := filepath.Join(base, "src")
	os.MkdirAll(filepath.Join(src, "data"), 0o755)
	os.WriteFile(filepath.Join(src, "data", "run1.json"), []byte(`{"ok":true}`), 0o644)
	// A directory the user cannot read: the walk must show it empty, count
	// it, and carry on.
	os.MkdirAll(filepath.Join(src, "secret", "inner"), 0o755)
	os.Chmod(filepath.Join(src, "secret"), 0o700)
	mnt := filepath.Join(base, "mnt")
	home := filepath.Join(base, "home")
	for _, d := range []string{mnt, home} {
		os.Mkdir(d, 0o755)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}

	// An ordinary user's runtime records go to XDG_RUNTIME_DIR when set.
	xdg := filepath.Join(base, "xdg")
	os.Mkdir(xdg, 0o700)
	os.Chown(xdg, int(cred.Uid), int(cred.Gid))
	e := &env{t: t, tmp: home, cred: cred, runtimeDir: xdg}
	pid, summary := e.mount(src, mnt)
	record := filepath.Join(xdg, "cachefs", recordName(mnt))
	if _, err := os.Stat(record); err != nil {
		t.Errorf("no runtime record under XDG_RUNTIME_DIR: %v", err)
	}
	if !strings.Contains(summary, "1 unreadable") {
		t.Errorf("summary should count the unreadable directory: %q", summary)
	}
	as := func(name string, args ...string) (string, error) {
		t.Helper()
		return combinedAs(t, cred, name, args...)
	}
	if out, err := as("cat", filepath.Join(mnt, "data", "run1.json")); err != nil || out != `{"ok":true}` {
		t.Errorf("read as the user: %q %v", out, err)
	}
	if out, err := as("ls", "-a", filepath.Join(mnt, "secret")); err == nil {
		t.Errorf("the kernel let the user list a 0700 directory of root's: %q", out)
	}
	r := e.run("unmount", mnt)
	if r.code != 0 || isMounted(mnt) {
		t.Fatalf("unmount as the user: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if !waitGone(pid, 10e9) {
		t.Error("daemon still running after unmount")
	}
	if _, err := os.Stat(record); err == nil {
		t.Error("the runtime record outlived the unmount")
	}
}
