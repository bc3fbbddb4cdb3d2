package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// asUser runs a shell script as cred and fails the test if it fails.
func asUser(t *testing.T, cred *syscall.Credential, script string) {
	t.Helper()
	if out, err := combinedAs(t, cred, "sh", "-ec", script); err != nil {
		t.Fatalf("as uid %d: %v: %s\n%s", cred.Uid, err, out, script)
	}
}

// sharedNode is a node's world-writable TMPDIR (1777, like /tmp) beside
// root-owned files an attacker would like root to overwrite.
type sharedNode struct {
	base, tmp string
	targets   []string
}

func newSharedNode(t *testing.T) *sharedNode {
	t.Helper()
	base := traversableDir(t, "cachefs-planted-")
	n := &sharedNode{base: base, tmp: filepath.Join(base, "tmp")}
	os.Mkdir(n.tmp, 0o755)
	if err := syscall.Chmod(n.tmp, 0o1777); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		p := filepath.Join(base, fmt.Sprintf("target%d", i))
		os.WriteFile(p, []byte("ORIGINAL root-owned content, do not touch\n"), 0o644)
		n.targets = append(n.targets, p)
	}
	return n
}

// fingerprint hashes the targets' contents, modes and mtimes: any write,
// truncation or chmod through a planted link changes it.
func (n *sharedNode) fingerprint(t *testing.T) string {
	h := sha256.New()
	for _, p := range n.targets {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%s %o %d %d %x\n", p, st.Mode, st.Uid, st.Mtim.Nano(), sha256.Sum256(b))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// wantNothingOfRootsIn fails if anything in dir is not owned by uid: root
// wrote into a directory another user planted.
func wantNothingOfRootsIn(t *testing.T, dir string, uid int) {
	t.Helper()
	// A directory that cannot be walked must not pass for one root left
	// alone.
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		if int(st.Uid) != uid {
			t.Errorf("%s is owned by uid %d: written into the planted directory", p, st.Uid)
		}
		return nil
	})
	if err != nil {
		t.Errorf("walking the planted directory %s: %v", dir, err)
	}
}

// cacheDirName is the default cache directory's name for src, as mount
// derives it: the name is what an attacker predicts.
func cacheDirName(src string) string {
	h := sha256.Sum256([]byte(src))
	name := regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(filepath.Base(src), "_")
	return name + "-" + hex.EncodeToString(h[:6])
}

func recordName(mnt string) string {
	h := sha256.Sum256([]byte(mnt))
	return hex.EncodeToString(h[:8]) + ".json"
}

// wantRefused checks a command failed with exit 9 and one line naming path
// and what.
func wantRefused(t *testing.T, r result, path, what string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	if r.code != 9 || len(lines) != 1 || !strings.Contains(lines[0], path+" ") || !strings.Contains(lines[0], what) {
		t.Errorf("exit %d, stderr %q; want exit 9 and one line naming %s and saying %q", r.code, r.stderr, path, what)
	}
}

// forget unmounts and stops what a mount that should have been refused
// started.
func forget(t *testing.T, r result, mnt string) {
	if m := pidRe.FindStringSubmatch(r.stdout); m != nil {
		pid, _ := strconv.Atoi(m[1])
		cleanupMount(t, mnt, pid)
	} else if isMounted(mnt) {
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
}

// plant makes, as the attacker, the directory that victim's default cache
// dir and fallback runtime dir would use, with links at every name cachefs writes:
// the log, the lock, the control socket, the record and its old fixed
// temporary name.
func (n *sharedNode) plant(t *testing.T, cred *syscall.Credential, victim int, src, mnt string) string {
	t.Helper()
	top := filepath.Join(n.tmp, fmt.Sprintf("cachefs-%d", victim))
	cache := filepath.Join(top, cacheDirName(src))
	rec := filepath.Join(top, "run", recordName(mnt))
	t1, t2 := n.targets[0], n.targets[1]
	asUser(t, cred, fmt.Sprintf(`umask 0; mkdir -p %[1]s/run %[2]s/blocks
ln -s %[3]s %[2]s/cachefs.log; ln -s %[3]s %[2]s/lock; ln -s %[4]s %[2]s/control.sock
ln -s %[4]s %[5]s.tmp; ln -s %[4]s %[5]s`, top, cache, t1, t2, rec))
	return top
}

// plantedForRoot is a shared node where another user has planted root's
// cache and runtime directories (plant) for a mount of src on mnt, and
// before is the fingerprint of root's files that the links point to.
type plantedForRoot struct {
	n                     *sharedNode
	planter               string
	uid                   int
	src, mnt, top, before string
}

func plantForRoot(t *testing.T) *plantedForRoot {
	t.Helper()
	p := &plantedForRoot{n: newSharedNode(t)}
	var cred *syscall.Credential
	p.planter, cred = newUser(t, "plant")
	p.uid = int(cred.Uid)
	p.src, p.mnt = filepath.Join(p.n.base, "src"), filepath.Join(p.n.base, "mnt")
	if err := os.Mkdir(p.src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.src, "f"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.top = p.n.plant(t, cred, 0, p.src, p.mnt)
	p.before = p.n.fingerprint(t)
	return p
}

// check fails the test if root's files changed or root wrote anything in
// the planted directories.
func (p *plantedForRoot) check(t *testing.T, how string) {
	t.Helper()
	if p.n.fingerprint(t) != p.before {
		t.Errorf("a root-owned file outside the cache was overwritten through %s", how)
	}
	wantNothingOfRootsIn(t, p.top, p.uid)
}

func TestPlantedCacheDirRefused(t *testing.T) {
	p := plantForRoot(t)
	n, src, mnt, rootTop := p.n, p.src, p.mnt, p.top

	e := &env{t: t, tmp: n.tmp}
	r := e.run("mount", src, mnt)
	defer forget(t, r, mnt)
	wantRefused(t, r, rootTop, fmt.Sprintf("owned by uid %d (%s)", p.uid, p.planter))
	if isMounted(mnt) {
		t.Error("mounted with a planted cache directory")
	}
	p.check(t, "a planted link")
}

func TestLooseOwnCacheDirRefused(t *testing.T) {
	for _, mode := range []uint32{0o755, 0o770} {
		n := newSharedNode(t)
		src := filepath.Join(n.base, "src")
		os.Mkdir(src, 0o755)
		mnt := filepath.Join(n.base, "mnt")
		// Ours, but open to others: whatever they put in it while it was
		// open stays there, so it is refused rather than tightened.
		top := filepath.Join(n.tmp, "cachefs-0")
		if err := os.Mkdir(top, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Chmod(top, mode); err != nil {
			t.Fatal(err)
		}

		e := &env{t: t, tmp: n.tmp}
		r := e.run("mount", src, mnt)
		forget(t, r, mnt)
		wantRefused(t, r, top, fmt.Sprintf("has mode %04o", mode))
		if fi, err := os.Stat(top); err != nil {
			t.Error(err)
		} else if uint32(fi.Mode().Perm()) != mode {
			t.Errorf("the refused directory's mode changed: %v", fi.Mode())
		}
	}
}

// Root's records live under /run, so a runtime directory planted in the
// shared TMPDIR is never written, even with a --cache-dir of root's own.
func TestRootRecordNotInSharedTmp(t *testing.T) {
	p := plantForRoot(t)
	n, src, mnt := p.n, p.src, p.mnt

	e := &env{t: t, tmp: n.tmp, defaultRuntime: true}
	e.mount(src, mnt, "--cache-dir", filepath.Join(n.base, "cache"))
	if r := e.unmount(mnt); !strings.Contains(r.stdout, "served") {
		t.Errorf("unmount found no figures in the record: %q", r.stdout)
	}
	p.check(t, "the planted record name")
}

// An ordinary user without XDG_RUNTIME_DIR keeps records under the shared
// TMPDIR: a directory planted there refuses the mount before anything is
// mounted.
func TestPlantedRuntimeDirRefused(t *testing.T) {
	planter, acred := newUser(t, "plant")
	_, vcred := newUser(t, "victim")
	auid, vuid := int(acred.Uid), int(vcred.Uid)
	n := newSharedNode(t)
	src := filepath.Join(n.base, "src")
	os.Mkdir(src, 0o755)
	mnt, cache := filepath.Join(n.base, "mnt"), filepath.Join(n.base, "cache")
	for _, d := range []string{mnt, cache} {
		os.Mkdir(d, 0o700)
		os.Chown(d, vuid, int(vcred.Gid))
	}
	top := filepath.Join(n.tmp, fmt.Sprintf("cachefs-%d", vuid))
	asUser(t, acred, fmt.Sprintf("umask 0; mkdir -p %s/run; ln -s %s %s/run/%s.tmp", top, n.targets[1], top, recordName(mnt)))
	before := n.fingerprint(t)

	e := &env{t: t, tmp: n.tmp, cred: vcred}
	r := e.run("mount", src, mnt, "--cache-dir", cache)
	forget(t, r, mnt)
	wantRefused(t, r, top, fmt.Sprintf("owned by uid %d (%s)", auid, planter))
	if n.fingerprint(t) != before {
		t.Error("a file outside was changed")
	}
	wantNothingOfRootsIn(t, top, auid)
}

// mountVia mounts src at name, a link to real, and arranges for the mount
// at real to be gone when the test ends.
func mountVia(e *env, src, name, real string) (summary string) {
	e.t.Helper()
	r := e.run("mount", src, name)
	m := pidRe.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		e.t.Fatalf("cachefs mount through a link exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	pid, _ := strconv.Atoi(m[1])
	e.t.Cleanup(func() { cleanupMount(e.t, real, pid) })
	return r.stdout
}

func TestSymlinkedMountpoint(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	real, link := filepath.Join(e.tmp, "real"), filepath.Join(e.tmp, "link")
	os.Mkdir(real, 0o755)
	os.Symlink("real", link)

	summary := mountVia(e, src, link, real)
	if !strings.Contains(summary, " at "+real+":") {
		t.Errorf("summary should name the real mountpoint %s: %q", real, summary)
	}
	if !isMounted(real) {
		t.Fatalf("%s is not mounted", real)
	}
	for _, name := range []string{link, real} {
		if r := e.run("status", name); r.code != 0 || !strings.Contains(r.stdout, real) {
			t.Errorf("status %s: exit %d %q %q", name, r.code, r.stdout, r.stderr)
		}
	}
	if r := e.run("mount", src, link); r.code != 5 {
		t.Errorf("second mount through the link: exit %d, want 5 (already mounted): %q", r.code, r.stderr)
	}
	if r := e.unmount(link); !strings.Contains(r.stdout, "served") {
		t.Errorf("unmount through the link found no record: %q", r.stdout)
	}
	rec := filepath.Join(e.tmp, "run", recordName(real))
	if _, err := os.Lstat(rec); err == nil {
		t.Errorf("record %s left behind", rec)
	}

	// The other way round, and with the daemon dead: unmount must not
	// stat through the dead mount to resolve the link.
	pid, _ := e.mount(src, real)
	syscall.Kill(pid, syscall.SIGKILL)
	waitGone(pid, 10e9)
	if r := e.run("unmount", link); r.code != 0 || isMounted(real) {
		t.Errorf("unmount of a dead mount through the link: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Lstat(rec); err == nil {
		t.Errorf("record %s left behind after cleaning the dead mount", rec)
	}

	// Links into the source, or to it, cannot get round the check.
	os.Symlink(filepath.Join(src, "sub"), filepath.Join(e.tmp, "intosrc"))
	os.Symlink(src, filepath.Join(e.tmp, "tosrc"))
	for _, l := range []string{"intosrc", "tosrc"} {
		r := e.run("mount", src, filepath.Join(e.tmp, l))
		forget(t, r, filepath.Join(e.tmp, l))
		if r.code != 4 || !strings.Contains(r.stderr, "hide") {
			t.Errorf("mount through %s: exit %d %q, want 4 and the source hidden", l, r.code, r.stderr)
		}
	}
	if isMounted(filepath.Join(src, "sub")) || isMounted(src) {
		t.Error("mounted over the source")
	}
}
