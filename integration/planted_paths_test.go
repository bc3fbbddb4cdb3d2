package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlantedMountpointRefused: root is asked to mount at a name that
// another user chose first: a link in a shared /tmp to an empty directory
// of root's (root would mount the source over it), a directory of that
// user's own there (they could swap it for such a link before the mount),
// or a name in a directory anyone may write without the sticky bit. Each is
// refused with exit 4 and one line saying why, and nothing is mounted.
func TestPlantedMountpointRefused(t *testing.T) {
	n := newSharedNode(t)
	planter, cred := newUser(t, "plant")
	src := filepath.Join(n.base, "src")
	victim := filepath.Join(n.base, "victim")
	open := filepath.Join(n.base, "open")
	for _, d := range []string{src, victim, open} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	owner := fmt.Sprintf("owned by uid %d (%s)", cred.Uid, planter)
	for _, c := range []struct {
		mnt, plant, says string
	}{
		{filepath.Join(n.tmp, "link"), "ln -s " + victim, "is a symlink " + owner},
		{filepath.Join(n.tmp, "dir"), "mkdir", "it is " + owner},
		{filepath.Join(open, "mnt"), "", "is writable by others without the sticky bit"},
	} {
		if c.plant != "" {
			asUser(t, cred, c.plant+" "+c.mnt)
		}
		e := newEnv(t)
		r := e.run("mount", src, c.mnt)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 4 || len(lines) != 1 || !strings.Contains(lines[0], "another user could choose where it leads") || !strings.Contains(lines[0], c.says) {
			t.Errorf("mount at %s: exit %d, stderr %q; want exit 4 and one line saying %q", c.mnt, r.code, r.stderr, c.says)
		}
		for _, p := range []string{c.mnt, victim} {
			if isMounted(p) {
				t.Errorf("mount at %s mounted %s", c.mnt, p)
			}
		}
	}
}

// TestPlantedProfileLinkNotFollowed: a --cpuprofile path in a shared /tmp
// where another user put a link to a file of root's first. The daemon
// mounts without a profile, and root's file is left as it was.
func TestPlantedProfileLinkNotFollowed(t *testing.T) {
	n := newSharedNode(t)
	_, cred := newUser(t, "plant")
	prof := filepath.Join(n.tmp, "cachefs.pprof")
	asUser(t, cred, fmt.Sprintf("ln -s %s %s", n.targets[0], prof))
	before := n.fingerprint(t)
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mount(src, mnt, "--cpuprofile", prof)
	e.unmount(mnt)
	if n.fingerprint(t) != before {
		t.Error("the CPU profile was written through a link another user planted")
	}
}
