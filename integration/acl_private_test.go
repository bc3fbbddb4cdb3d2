package integration

// A mount without --allow-other is reachable by the mounting user only, and
// the daemon opens source files with that user's credentials, so the source
// itself refuses what an ACL refuses: such a mount's walk skips ACLs. These
// tests check that it does, and that a shared mount never runs on a
// snapshot without them.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// slowACLSource serves aclTree's source through the slow-source fixture so
// a test can count the requests a walk sends.
func slowACLSource(t *testing.T, e *env, src string) (string, *slowfs.FS) {
	t.Helper()
	slow := filepath.Join(e.tmp, "slow")
	if err := os.Mkdir(slow, 0o755); err != nil {
		t.Fatal(err)
	}
	sfs, err := slowfs.Mount(src, slow, slowfs.Options{CacheTimeout: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sfs.Unmount() })
	return slow, sfs
}

// TestACLPrivateMountSkipsACLs: a mount without --allow-other sends no
// getxattr to the source while walking, while --save-index on the same
// kind of mount records ACLs, since the index may serve a shared mount.
func TestACLPrivateMountSkipsACLs(t *testing.T) {
	f := newACLFixture(t, "p")
	e, src := f.e, f.src
	slow, sfs := slowACLSource(t, e, src)
	mnt := filepath.Join(e.tmp, "mnt")
	cache := filepath.Join(e.tmp, "cache")

	e.mount(slow, mnt, "--prefetch", "off", "--cache-dir", cache)
	c := sfs.Counts()
	if c.Ops["getxattr"] != 0 || c.Meta == 0 {
		t.Errorf("the walk of a private mount: %d getxattr of %d metadata requests; want none of some: %v", c.Ops["getxattr"], c.Meta, c.Ops)
	}
	e.unmount(mnt)

	sfs.Reset()
	idx := filepath.Join(e.tmp, "saved.index")
	e.mount(slow, mnt, "--prefetch", "off", "--cache-dir", cache, "--save-index", idx)
	if c := sfs.Counts(); c.Ops["getxattr"] == 0 {
		t.Errorf("the walk of a private mount with --save-index read no ACLs: %v", c.Ops)
	}
	e.unmount(mnt)
}

// TestACLSharedMountRefusesIndexWithoutACLs: the index a private mount keeps
// for --reuse-index holds no ACLs. --allow-other --index refuses it with
// exit 11 and one line naming the rebuild command; --allow-other
// --reuse-index walks again and enforces the ACLs; an index saved by a
// private mount serves a shared one.
func TestACLSharedMountRefusesIndexWithoutACLs(t *testing.T) {
	f := newACLFixture(t, "r")
	e, src := f.e, f.src
	mnt := filepath.Join(e.tmp, "mnt")
	cache := filepath.Join(e.tmp, "cache")
	kept := filepath.Join(cache, "snapshot.index")

	e.mount(src, mnt, "--cache-dir", cache, "--reuse-index")
	e.unmount(mnt)
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("no kept index: %v", err)
	}
	idx := filepath.Join(e.tmp, "private.index")
	data, err := os.ReadFile(kept)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(idx, data, 0o644)

	r := e.run("mount", src, mnt, "--allow-other", "--index", idx, "--cache-dir", filepath.Join(e.tmp, "cache2"))
	msg := strings.TrimSpace(r.stderr)
	if r.code != 11 || strings.Contains(msg, "\n") || !strings.Contains(msg, "without POSIX ACLs") ||
		!strings.Contains(msg, "cachefs snapshot "+src+" -o "+idx) {
		t.Errorf("--allow-other --index of an index without ACLs: exit %d, %q; want 11 and one line with the rebuild command", r.code, r.stderr)
	}
	if isMounted(mnt) {
		t.Errorf("%s mounted from a refused index", mnt)
		e.unmount(mnt)
	}

	logFile := filepath.Join(e.tmp, "reuse.log")
	e.mount(src, mnt, "--allow-other", "--cache-dir", cache, "--reuse-index", "--log-file", logFile)
	f.checkServed(t, mnt)
	e.unmount(mnt)
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "made without POSIX ACLs") {
		t.Errorf("the daemon log does not say why the kept index was walked again:\n%s", b)
	}

	saved := filepath.Join(e.tmp, "saved.index")
	e.mount(src, mnt, "--cache-dir", cache, "--save-index", saved)
	e.unmount(mnt)
	e.mount(src, mnt, "--allow-other", "--index", saved, "--cache-dir", cache)
	f.checkServed(t, mnt)
	e.unmount(mnt)
}
