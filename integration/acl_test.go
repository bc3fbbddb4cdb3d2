package integration

import (
	"context"
	binenc "encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// aclTools makes sure setfacl and getfacl (Debian's acl package) are there;
// CI must install them, so there a missing tool fails the test.
func aclTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"setfacl", "getfacl", "useradd", "userdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: install Debian's acl package (setfacl, getfacl) and passwd (useradd)", tool)
			}
			t.Skipf("ACL tests need %s (Debian packages acl and passwd)", tool)
		}
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("ACL tests create users and need root")
		}
		t.Skip("ACL tests create users and need root")
	}
}

// aclEnv is an env whose directories other users can traverse, which a
// shared mount needs (t.TempDir is 0700).
func aclEnv(t *testing.T) *env {
	t.Helper()
	base := traversableDir(t, "cachefs-acl-")
	return &env{t: t, tmp: base}
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return string(out)
}

// readAs reads path as the user; err is what the read failed with.
func readAs(t *testing.T, cred *syscall.Credential, path string) (string, string, error) {
	t.Helper()
	return runAsUser(t, cred, "cat", path)
}

// expectAccess checks what each user gets from file, in the source and
// through the mount alike.
func expectAccess(t *testing.T, cred *syscall.Credential, who string, want string, paths ...string) {
	t.Helper()
	for _, p := range paths {
		out, stderr, err := readAs(t, cred, p)
		switch want {
		case "denied":
			if err == nil || !strings.Contains(stderr, "Permission denied") {
				t.Errorf("%s reading %s: %q, %v %q; want Permission denied", who, p, out, err, stderr)
			}
		default:
			if err != nil || out != want {
				t.Errorf("%s reading %s: %q, %v %q; want %q", who, p, out, err, stderr, want)
			}
		}
	}
}

// aclTree is a source where denied.txt (0644) is closed to one user by an
// ACL entry, plain.txt has no ACL, and dir/ carries a default ACL.
func aclTree(t *testing.T, e *env, denied, other string) string {
	t.Helper()
	src := filepath.Join(e.tmp, "src")
	if err := os.MkdirAll(filepath.Join(src, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"denied.txt": "not for " + denied, "plain.txt": "for everyone"} {
		if err := os.WriteFile(filepath.Join(src, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, "setfacl", "-m", "u:"+denied+":---", filepath.Join(src, "denied.txt"))
	mustRun(t, "setfacl", "-d", "-m", "u:"+other+":r-x", filepath.Join(src, "dir"))
	return src
}

// aclFixture is aclTree's source in an aclEnv, with its two users: denied,
// whom an ACL entry shuts out of denied.txt, and other, whom dir's default
// ACL names.
type aclFixture struct {
	e                     *env
	src                   string
	deniedName, otherName string
	denied, other         *syscall.Credential
}

// newACLFixture creates the users, named after role so that tests running
// at once do not share them, and the source.
func newACLFixture(t *testing.T, role string) *aclFixture {
	t.Helper()
	aclTools(t)
	f := &aclFixture{e: aclEnv(t)}
	f.deniedName, f.denied = newUser(t, role+"deny")
	f.otherName, f.other = newUser(t, role+"other")
	f.src = aclTree(t, f.e, f.deniedName, f.otherName)
	return f
}

// checkServed is checkACLsServed for the fixture's source and users.
func (f *aclFixture) checkServed(t *testing.T, mnt string) {
	t.Helper()
	checkACLsServed(t, f.src, mnt, f.denied, f.other, f.otherName)
}

func getfacl(t *testing.T, path string) string {
	t.Helper()
	return mustRun(t, "getfacl", "--omit-header", "--numeric", path)
}

// checkACLsServed: through mnt, the denied user is refused what the source
// refuses it, the other user reads, and getfacl shows the source's ACLs,
// the directory's default ACL included.
func checkACLsServed(t *testing.T, src, mnt string, denied, other *syscall.Credential, otherName string) {
	t.Helper()
	j := filepath.Join
	expectAccess(t, denied, "denied user", "denied", j(src, "denied.txt"), j(mnt, "denied.txt"))
	expectAccess(t, denied, "denied user", "for everyone", j(src, "plain.txt"), j(mnt, "plain.txt"))
	expectAccess(t, other, "other user", "not for "+userName(t, denied), j(src, "denied.txt"), j(mnt, "denied.txt"))
	for _, p := range []string{"denied.txt", "dir", "plain.txt"} {
		if got, want := getfacl(t, j(mnt, p)), getfacl(t, j(src, p)); got != want {
			t.Errorf("getfacl %s through the mount:\n%s\nsource:\n%s", p, got, want)
		}
	}
	if got := mustRun(t, "getfacl", "--omit-header", j(mnt, "dir")); !strings.Contains(got, "default:user:"+otherName+":r-x") {
		t.Errorf("getfacl dir through the mount has no default entry for %s:\n%s", otherName, got)
	}
}

func userName(t *testing.T, cred *syscall.Credential) string {
	u, err := user.LookupId(strconv.Itoa(int(cred.Uid)))
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

// TestACLDeniedUserRefused: a user an ACL entry shuts out of a 0644 file
// gets EACCES through a root --allow-other mount, as from the source.
func TestACLDeniedUserRefused(t *testing.T) {
	f := newACLFixture(t, "")
	e, src := f.e, f.src
	mnt := filepath.Join(e.tmp, "mnt")
	logFile := filepath.Join(e.tmp, "acl.log")
	e.mount(src, mnt, "--allow-other", "--cache-dir", filepath.Join(e.tmp, "cache"), "--log-file", logFile)
	f.checkServed(t, mnt)
	if b, _ := os.ReadFile(logFile); !strings.Contains(string(b), "the kernel enforces the source's POSIX ACLs") {
		t.Errorf("the daemon log does not say ACLs are enforced:\n%s", b)
	}
	e.unmount(mnt)
}

// TestACLZeroMetadataAfterMount: with ACLs enforced, permission checks,
// getfacl and listings are answered from the snapshot, never by the source,
// and setfacl through the read-only mount fails with EROFS.
func TestACLZeroMetadataAfterMount(t *testing.T) {
	f := newACLFixture(t, "z")
	e, src := f.e, f.src
	slow, sfs := slowACLSource(t, e, src)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(slow, mnt, "--allow-other", "--prefetch", "off", "--cache-dir", filepath.Join(e.tmp, "cache"))
	if c := sfs.Counts(); c.Ops["getxattr"] == 0 {
		t.Fatalf("the walk read no extended attributes at the source: %v", c.Ops)
	}

	sfs.Reset()
	f.checkServed(t, mnt)
	mustRun(t, "ls", "-lR", mnt)
	out, err := exec.Command("setfacl", "-m", "u:"+f.deniedName+":rwx", filepath.Join(mnt, "plain.txt")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Read-only file system") {
		t.Errorf("setfacl through the mount: %v %q, want Read-only file system", err, out)
	}
	// checkACLsServed reads files: opening them reaches the source, with
	// a LOOKUP of the name whenever the source's kernel has dropped its
	// dentry (drop_caches or memory pressure anywhere on the machine).
	// Those are part of the open; any other metadata call is not.
	if c := sfs.Counts(); c.Meta != c.Ops["lookup"] || c.Ops["lookup"] > c.Opens {
		t.Errorf("after mount the source served metadata calls beyond opening files: %v", c.Ops)
	}
	if got := mustRun(t, "getfacl", "--omit-header", filepath.Join(src, "plain.txt")); strings.Contains(got, f.deniedName) {
		t.Errorf("setfacl through the mount changed the source:\n%s", got)
	}
	e.unmount(mnt)
}

// TestACLIndexRoundTrip: ACLs survive `cachefs snapshot` and a mount of the
// index, and an index of the format before ACLs is refused with the
// command that rebuilds it.
func TestACLIndexRoundTrip(t *testing.T) {
	f := newACLFixture(t, "i")
	e, src := f.e, f.src
	idx := filepath.Join(e.tmp, "tree.index")
	e.makeIndex(src, idx)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt, "--index", idx, "--allow-other", "--cache-dir", filepath.Join(e.tmp, "cache"))
	f.checkServed(t, mnt)
	e.unmount(mnt)

	data, err := os.ReadFile(idx)
	if err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(e.tmp, "v1.index")
	os.WriteFile(old, otherVersion(data, 1), 0o644)
	r := e.run("mount", src, mnt, "--index", old, "--cache-dir", filepath.Join(e.tmp, "cache"))
	if r.code != 11 || !strings.Contains(r.stderr, "unsupported format version 1") || !strings.Contains(r.stderr, "cachefs snapshot "+src+" -o "+old) {
		t.Errorf("mount of a version 1 index: exit %d, %q; want 11 with the rebuild command", r.code, r.stderr)
	}
	if isMounted(mnt) {
		t.Errorf("%s mounted from a refused index", mnt)
		e.unmount(mnt)
	}
}

// nfs4Node is a loopback node that reports an NFSv4 ACL naming a user on
// every file whose name starts with "nfs4-", as an NFSv4 client shows one.
type nfs4Node struct {
	*gofs.LoopbackNode
}

var (
	_ gofs.NodeWrapChilder = (*nfs4Node)(nil)
	_ gofs.NodeGetxattrer  = (*nfs4Node)(nil)
)

func (n *nfs4Node) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &nfs4Node{ops.(*gofs.LoopbackNode)}
}

func (n *nfs4Node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != "system.nfs4_acl" {
		return n.LoopbackNode.Getxattr(ctx, attr, dest)
	}
	if !strings.HasPrefix(filepath.Base(n.Path(nil)), "nfs4-") {
		return 0, syscall.ENODATA
	}
	// One ACE: type, flag, mask, then the who string, XDR-padded.
	who := "alice@example.org"
	v := binenc.BigEndian.AppendUint32(nil, 1)
	v = binenc.BigEndian.AppendUint32(v, 0)
	v = binenc.BigEndian.AppendUint32(v, 0)
	v = binenc.BigEndian.AppendUint32(v, 1)
	v = binenc.BigEndian.AppendUint32(v, uint32(len(who)))
	v = append(v, who...)
	v = append(v, make([]byte, (4-len(who)%4)%4)...)
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// mountNFS4Source serves dir through nfs4Node at a new mountpoint.
func mountNFS4Source(t *testing.T, dir, mnt string) {
	t.Helper()
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	os.Mkdir(mnt, 0o755)
	srv, err := gofs.Mount(mnt, &nfs4Node{root.(*gofs.LoopbackNode)}, &gofs.Options{
		MountOptions: fuse.MountOptions{FsName: "nfs4sim", Name: "nfs4sim", DirectMount: true,
			DisabledCapabilities: fuse.CAP_PASSTHROUGH},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmounting the NFSv4 stand-in: %v", err)
		}
	})
}

// TestACLUnrecordedServedToOwnerOnly: a file whose access control the
// snapshot cannot hold (an NFSv4 ACL naming a user) is served to its owner
// only on a shared mount, and the daemon says so once with a count.
func TestACLUnrecordedServedToOwnerOnly(t *testing.T) {
	aclTools(t)
	e := aclEnv(t)
	_, owner := newUser(t, "owner")
	_, other := newUser(t, "nfs4")
	dir := filepath.Join(e.tmp, "dir")
	os.Mkdir(dir, 0o755)
	for _, f := range []string{"nfs4-guarded.txt", "plain.txt"} {
		os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644)
		os.Chown(filepath.Join(dir, f), int(owner.Uid), int(owner.Gid))
	}
	src := filepath.Join(e.tmp, "src")
	mountNFS4Source(t, dir, src)
	mnt := filepath.Join(e.tmp, "mnt")
	logFile := filepath.Join(e.tmp, "nfs4.log")
	e.mount(src, mnt, "--allow-other", "--cache-dir", filepath.Join(e.tmp, "cache"), "--log-file", logFile)

	expectAccess(t, owner, "owner", "nfs4-guarded.txt", filepath.Join(mnt, "nfs4-guarded.txt"))
	expectAccess(t, other, "other user", "denied", filepath.Join(mnt, "nfs4-guarded.txt"))
	expectAccess(t, other, "other user", "plain.txt", filepath.Join(mnt, "plain.txt"))
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "nfs4-guarded.txt"), &st); err != nil || st.Mode&0o7777 != 0o600 {
		t.Errorf("nfs4-guarded.txt through the mount: mode %o, %v; want 0600", st.Mode&0o7777, err)
	}
	e.unmount(mnt)
	b, _ := os.ReadFile(logFile)
	if n := strings.Count(string(b), "served to their owners only"); n != 1 || !strings.Contains(string(b), " entries=1 ") {
		t.Errorf("want one log line counting 1 entry served to its owner only; log:\n%s", b)
	}
}

// BenchmarkWalkACLCost measures what recording ACLs adds to the walk: `cachefs
// snapshot` of BenchmarkMountWalk's 24,000-entry tree behind the slow-source
// fixture (1 ms per metadata operation), reporting the walk's seconds and
// the metadata and getxattr requests per entry that reached the source. With
// CACHEFS_BASE_BINARY set to a cachefs built before ACLs were recorded, it
// alternates the two binaries on the same tree so that both see the same
// load on a shared machine, and reports the base's figures with a "base-"
// prefix. Run with -benchtime=1x.
func BenchmarkWalkACLCost(b *testing.B) {
	base := b.TempDir()
	src := filepath.Join(base, "src")
	entries := float64(makeEEGTree(b, src, 50, 20, 20_000))
	opts := slowfs.Options{MetaLatency: time.Millisecond, ReadLatency: 500 * time.Microsecond,
		CacheTimeout: time.Hour, DisableReadDirPlus: true}
	bins := []struct{ prefix, path string }{{"", binary}}
	if p := os.Getenv("CACHEFS_BASE_BINARY"); p != "" {
		bins = append(bins, struct{ prefix, path string }{"base-", p})
	}
	sums := make([][3]float64, len(bins))
	for i := 0; i < b.N; i++ {
		for k, bin := range bins {
			slow := filepath.Join(base, fmt.Sprintf("slow-%d-%d", i, k))
			os.Mkdir(slow, 0o755)
			sfs, err := slowfs.Mount(src, slow, opts)
			if err != nil {
				b.Fatal(err)
			}
			idx := filepath.Join(base, "walk.index")
			start := time.Now()
			out, err := exec.Command(bin.path, "snapshot", slow, "-o", idx).CombinedOutput()
			secs := time.Since(start).Seconds()
			c := sfs.Counts()
			sfs.Unmount()
			if err != nil {
				b.Fatalf("%s snapshot: %v: %s", bin.path, err, out)
			}
			sums[k][0] += secs
			sums[k][1] += float64(c.Meta)
			sums[k][2] += float64(c.Ops["getxattr"])
		}
	}
	n := float64(b.N)
	for k, bin := range bins {
		b.ReportMetric(sums[k][0]/n, bin.prefix+"walk-s")
		b.ReportMetric(sums[k][1]/n/entries, bin.prefix+"meta/entry")
		b.ReportMetric(sums[k][2]/n/entries, bin.prefix+"getxattr/entry")
	}
	b.ReportMetric(entries, "entries")
}
