package integration

import (
	binenc "encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachefs/cachefs/integration/slowfs"
	"github.com/cachefs/cachefs/integration/treetest"
)

// makeIndex runs `cachefs snapshot src -o idx` and expects success.
func (e *env) makeIndex(src, idx string) result {
	e.t.Helper()
	r := e.run("snapshot", src, "-o", idx)
	if r.code != 0 {
		e.t.Fatalf("cachefs snapshot exited %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if r.stderr != "" {
		e.t.Errorf("cachefs snapshot wrote to stderr without a terminal: %q", r.stderr)
	}
	return r
}

// TestIndexRoundTrip: walked, written, loaded: the mount equals the source
// and a walked mount of it, awkward names, symlinks, hard links and special
// files included.
func TestIndexRoundTrip(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	st := treetest.BuildAwkward(t, src)
	idx := filepath.Join(e.tmp, "shared", "tree.index")
	os.Mkdir(filepath.Dir(idx), 0o755)
	r := e.makeIndex(src, idx)
	want := fmt.Sprintf("%d entries", st.Entries+1)
	if !strings.Contains(strings.ReplaceAll(r.stdout, ",", ""), want) || !strings.Contains(r.stdout, idx) || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("snapshot summary %q: want one line naming %s and %q", r.stdout, idx, want)
	}
	if ents, _ := os.ReadDir(filepath.Dir(idx)); len(ents) != 1 {
		t.Errorf("the index directory holds %d files, want only the index", len(ents))
	}

	mnt := filepath.Join(e.tmp, "mnt")
	logFile := filepath.Join(e.tmp, "index-mount.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("daemon log:\n%s", b)
		}
	})
	_, summary := e.mount(src, mnt, "--index", idx, "--max-index-age", "1d", "--log-file", logFile)
	if !strings.Contains(strings.ReplaceAll(summary, ",", ""), want) {
		t.Errorf("mount summary %q does not say %q", summary, want)
	}
	treetest.CompareTrees(t, src, mnt, treetest.CompareOptions{CheckNlink: true, CheckInodes: true})

	walked := filepath.Join(e.tmp, "walked")
	e.mount(src, walked, "--cache-dir", filepath.Join(e.tmp, "cache2"))
	// Contents were compared with the source above; here the metadata.
	treetest.CompareTrees(t, walked, mnt, treetest.CompareOptions{CheckNlink: true, CheckInodes: true, SkipContent: true})
	e.unmount(walked)
	e.unmount(mnt)
}

// slowTree is the tree of TestZeroMetadataAfterMount behind the slow-source
// fixture: 7 directories of 30 files, a symlink and a dangling one each.
func slowTree(t *testing.T, e *env) (base, slowMnt string, sfs *slowfs.FS) {
	base = filepath.Join(e.tmp, "base")
	os.Mkdir(base, 0o755)
	for d := 0; d < 7; d++ {
		dir := filepath.Join(base, fmt.Sprintf("d%d", d), "sub")
		os.MkdirAll(dir, 0o755)
		for f := 0; f < 30; f++ {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%02d.json", f)), []byte(strings.Repeat("x", f*10)), 0o644)
		}
		os.Symlink(fmt.Sprintf("sub/f%02d.json", d), filepath.Join(base, fmt.Sprintf("d%d", d), "link"))
		os.Symlink("/nowhere/at/all", filepath.Join(base, fmt.Sprintf("d%d", d), "dangling"))
	}
	slowMnt = filepath.Join(e.tmp, "slow")
	os.Mkdir(slowMnt, 0o755)
	return base, slowMnt, mountSlow(t, base, slowMnt, slowfs.Options{})
}

// rootChecks bounds the metadata requests a mount from an index sends the
// source. Both are on the source root, none below it; the fixture caches
// nothing in the kernel, so each is one request: the mount's input checks
// stat the root (GETATTR; the same stat gives the inode compared with the
// index's and the device the cache needs) and check access(R_OK|X_OK)
// (ACCESS).
const rootChecks = 2

// TestIndexZeroMetadata: with --index, the source sees only the root checks
// during the mount and nothing afterwards, however the tree is browsed.
func TestIndexZeroMetadata(t *testing.T) {
	e := newEnv(t)
	_, slowMnt, sfs := slowTree(t, e)
	idx := filepath.Join(e.tmp, "tree.index")

	sfs.Reset()
	e.makeIndex(slowMnt, idx)
	walk := sfs.Counts()
	if walk.Meta < 7*32 {
		t.Fatalf("the fixture counted only %d metadata ops during the walk: it is not seeing cachefs", walk.Meta)
	}

	// What a node pays without an index: a mount that walks.
	sfs.Reset()
	walkMnt := filepath.Join(e.tmp, "walked")
	e.mount(slowMnt, walkMnt, "--cache-dir", filepath.Join(e.tmp, "cache2"))
	walkMount := sfs.Counts()
	e.unmount(walkMnt)

	sfs.Reset()
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(slowMnt, mnt, "--index", idx)
	atMount := sfs.Counts()
	if n := metadataStorm(t, mnt); n != 14 {
		t.Errorf("saw %d symlinks, want 14", n)
	}
	metadataStorm(t, mnt)
	c := sfs.Counts()
	t.Logf("source metadata ops: cachefs snapshot %d %v; walking mount %d; mount with --index %d %v; after two storms %d %v",
		walk.Meta, walk.Ops, walkMount.Meta, atMount.Meta, atMount.Ops, c.Meta, c.Ops)
	if c.Meta > rootChecks || c.Opens != 0 || c.Reads != 0 {
		t.Errorf("mount with --index and browsing sent %d metadata ops (%v), want at most %d root checks", c.Meta, c.Ops, rootChecks)
	}
	for op := range c.Ops {
		if op != "getattr" && op != "access" {
			t.Errorf("mount with --index sent %s requests to the source: %v", op, c.Ops)
		}
	}
	if c.Meta*20 > walkMount.Meta {
		t.Errorf("mount with --index sent %d metadata ops, not far below a walking mount's %d", c.Meta, walkMount.Meta)
	}
	const nodes = 16
	t.Logf("a %d-node job: %d metadata ops at the source when every node walks (%d x %d), %d with one 'cachefs snapshot' and --index (%d + %d x %d)",
		nodes, nodes*walkMount.Meta, nodes, walkMount.Meta, walk.Meta+nodes*c.Meta, walk.Meta, nodes, c.Meta)

	// Contents still come from the source: that is what the zero means.
	b, err := os.ReadFile(filepath.Join(mnt, "d3/sub/f05.json"))
	if err != nil || string(b) != strings.Repeat("x", 50) {
		t.Fatalf("read through the mount: %q %v", b, err)
	}
	if c := sfs.Counts(); c.Opens == 0 || c.BytesRead < 50 {
		t.Errorf("reading a file did not reach the source: %v", c.Ops)
	}
	e.unmount(mnt)
}

// corrupt returns data with a bit flipped in the middle.
func flipped(data []byte) []byte {
	b := append([]byte(nil), data...)
	b[len(b)/2] ^= 0x04
	return b
}

// otherVersion rewrites the format version and fixes the checksum, as a
// genuine index of another version would have it.
func otherVersion(data []byte, v uint32) []byte {
	b := append([]byte(nil), data...)
	binenc.LittleEndian.PutUint32(b[8:], v)
	sum := crc32.Checksum(b[:len(b)-8], crc32.MakeTable(crc32.Castagnoli))
	binenc.LittleEndian.PutUint32(b[len(b)-8:], sum)
	return b
}

// TestIndexRefused: every unusable index fails the mount with exit 11 and
// one line on stderr, and nothing is mounted.
func TestIndexRefused(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	other := filepath.Join(e.tmp, "other")
	for _, d := range []string{src, other} {
		os.MkdirAll(filepath.Join(d, "dir"), 0o755)
		os.WriteFile(filepath.Join(d, "dir", "file"), []byte("data"), 0o644)
	}
	good := filepath.Join(e.tmp, "good.index")
	e.makeIndex(src, good)
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	otherIdx := filepath.Join(e.tmp, "other.index")
	e.makeIndex(other, otherIdx)

	write := func(name string, b []byte) string {
		p := filepath.Join(e.tmp, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name  string
		index string
		extra []string
		code  int
		msg   string
	}{
		{"truncated", write("truncated.index", data[:len(data)*2/3]), nil, 11, "truncated"},
		{"bit-flipped", write("flipped.index", flipped(data)), nil, 11, "corrupt: checksum mismatch"},
		{"wrong version", write("v9.index", otherVersion(data, 9)), nil, 11, "unsupported format version 9"},
		{"empty", write("empty.index", nil), nil, 11, "empty file"},
		{"not an index", write("list.txt", []byte("dir/file\n")), nil, 11, "not a cachefs snapshot index"},
		{"missing", filepath.Join(e.tmp, "nope.index"), nil, 11, "no such file"},
		{"another source", otherIdx, nil, 11, "another directory"},
		{"too old", good, []string{"--max-index-age", "1ns"}, 11, "too old"},
		{"bad age", good, []string{"--max-index-age", "soon"}, 2, "max-index-age"},
		{"with --save-index", good, []string{"--save-index", filepath.Join(e.tmp, "copy.index")}, 2, "--save-index"},
		{"with --reuse-index", good, []string{"--reuse-index"}, 2, "--reuse-index"},
	}
	for k, c := range cases {
		mnt := filepath.Join(e.tmp, fmt.Sprintf("m%d", k))
		r := e.run(append([]string{"mount", src, mnt, "--index", c.index}, c.extra...)...)
		if r.code != c.code {
			t.Errorf("%s: exit %d, want %d (stdout %q, stderr %q)", c.name, r.code, c.code, r.stdout, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], c.msg) {
			t.Errorf("%s: stderr %q, want one line containing %q", c.name, r.stderr, c.msg)
		}
		if r.stdout != "" {
			t.Errorf("%s: stdout %q", c.name, r.stdout)
		}
		if isMounted(mnt) {
			t.Errorf("%s: %s mounted", c.name, mnt)
		}
		t.Logf("%s: exit %d: %s", c.name, r.code, strings.TrimSpace(r.stderr))
	}
	if left := e.daemons(); len(left) != 0 {
		t.Errorf("daemons left after refused mounts: %v", left)
	}
	// The good one mounts, from the same arguments.
	mnt := filepath.Join(e.tmp, "ok")
	e.mount(src, mnt, "--index", good)
	e.unmount(mnt)
}

// TestIndexSaveThenLoad: --save-index writes the walk's index; another
// mount loads it.
func TestIndexSaveThenLoad(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	treetest.BuildAwkward(t, src)
	idx := filepath.Join(e.tmp, "saved.index")
	m1 := filepath.Join(e.tmp, "m1")
	e.mount(src, m1, "--save-index", idx)
	e.unmount(m1)
	if fi, err := os.Stat(idx); err != nil || fi.Size() == 0 {
		t.Fatalf("--save-index left no index: %v", err)
	}
	m2 := filepath.Join(e.tmp, "m2")
	e.mount(src, m2, "--index", idx)
	treetest.CompareTrees(t, src, m2, treetest.CompareOptions{CheckNlink: true, CheckInodes: true, SkipContent: true})
	e.unmount(m2)
	if r := e.run("snapshot", "--check", idx); r.code != 0 {
		t.Errorf("snapshot --check of a fresh saved index: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	// Saving where it cannot refuses the mount.
	m3 := filepath.Join(e.tmp, "m3")
	r := e.run("mount", src, m3, "--save-index", filepath.Join(e.tmp, "no", "dir", "x.index"))
	if r.code != 11 || !strings.Contains(r.stderr, "--save-index") || isMounted(m3) {
		t.Errorf("--save-index into a missing directory: exit %d, %q", r.code, r.stderr)
	}
}

// TestIndexReuse: --reuse-index keeps an index in the cache directory and
// loads it while the source root is unchanged. It does not see changes
// below the root (documented); a change of the root's entries makes the
// next mount walk.
func TestIndexReuse(t *testing.T) {
	e := newEnv(t)
	base, slowMnt, sfs := slowTree(t, e)
	cacheDir := filepath.Join(e.tmp, "cache")
	mnt := filepath.Join(e.tmp, "mnt")
	logText := func() string { return string(readAll(t, filepath.Join(cacheDir, "cachefs.log"))) }
	mount := func() (meta uint64) {
		t.Helper()
		sfs.Reset()
		e.mount(slowMnt, mnt, "--reuse-index", "--cache-dir", cacheDir)
		return sfs.Counts().Meta
	}

	first := mount()
	e.unmount(mnt)
	if _, err := os.Stat(filepath.Join(cacheDir, "snapshot.index")); err != nil {
		t.Fatalf("no index kept in the cache directory: %v", err)
	}
	if first < 7*32 {
		t.Fatalf("the first mount sent %d metadata ops: it did not walk", first)
	}

	// A change below the root: not detected, the kept index is reused.
	os.WriteFile(filepath.Join(base, "d1", "sub", "deep-new.json"), []byte("{}"), 0o644)
	second := mount()
	if second > rootChecks {
		t.Errorf("the second mount sent %d metadata ops: it did not reuse the kept index", second)
	}
	if _, err := os.Lstat(filepath.Join(mnt, "d1", "sub", "deep-new.json")); err == nil {
		t.Error("a file added below the root showed: the index was not reused")
	}
	e.unmount(mnt)
	if !strings.Contains(logText(), "reusing the kept index") {
		t.Error("the log does not say the kept index was reused")
	}

	// A change at the root: its mtime moves, the next mount walks.
	os.WriteFile(filepath.Join(base, "top-new.json"), []byte("{}"), 0o644)
	third := mount()
	if third < 7*32 {
		t.Errorf("the third mount sent %d metadata ops: it reused a stale index", third)
	}
	for _, p := range []string{"top-new.json", "d1/sub/deep-new.json"} {
		if _, err := os.Lstat(filepath.Join(mnt, p)); err != nil {
			t.Errorf("%s after the re-walk: %v", p, err)
		}
	}
	e.unmount(mnt)
	if !strings.Contains(logText(), "the kept index is stale") {
		t.Error("the log does not say why it walked")
	}
	t.Logf("source metadata ops: first mount %d (walk), second %d (reused), third %d (root changed: walk)", first, second, third)
}

// TestSnapshotCheck: --check reports an added, a removed and a changed file.
func TestSnapshotCheck(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "sub-01", "eeg"), 0o755)
	for _, f := range []string{"a.edf", "b.edf", "c.json"} {
		os.WriteFile(filepath.Join(src, "sub-01", "eeg", f), []byte("v1"), 0o644)
	}
	idx := filepath.Join(e.tmp, "tree.index")
	e.makeIndex(src, idx)
	if r := e.run("snapshot", "--check", idx); r.code != 0 || !strings.Contains(r.stdout, "0 added, 0 removed, 0 changed") {
		t.Fatalf("check of a fresh index: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	os.WriteFile(filepath.Join(src, "sub-01", "eeg", "d.edf"), []byte("new"), 0o644)
	os.Remove(filepath.Join(src, "sub-01", "eeg", "b.edf"))
	os.WriteFile(filepath.Join(src, "sub-01", "eeg", "c.json"), []byte("version 2"), 0o644)
	r := e.run("snapshot", "--check", idx)
	t.Logf("stdout:\n%sstderr:\n%s", r.stdout, r.stderr)
	if r.code != 12 {
		t.Errorf("check after changes: exit %d, want 12", r.code)
	}
	for _, want := range []string{"1 added, 1 removed, 1 changed", "added    sub-01/eeg/d.edf\n", "removed  sub-01/eeg/b.edf\n", "changed  sub-01/eeg/c.json (size, mtime)\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q", want)
		}
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "differs") {
		t.Errorf("stderr %q, want one line saying the index differs", r.stderr)
	}
	// A source given explicitly replaces the recorded path; another
	// directory is refused.
	if r := e.run("snapshot", "--check", idx, filepath.Join(e.tmp)); r.code != 11 || !strings.Contains(r.stderr, "another directory") {
		t.Errorf("check against another directory: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("snapshot", "--check", filepath.Join(e.tmp, "nope")); r.code != 11 {
		t.Errorf("check of a missing index: exit %d: %s", r.code, r.stderr)
	}
	if r := e.run("snapshot", src); r.code != 2 || !strings.Contains(r.stderr, "-o INDEX") {
		t.Errorf("snapshot without -o: exit %d: %s", r.code, r.stderr)
	}
}

// TestSnapshotCheckSeesACLChange: an index made for shared mounts holds the
// source's POSIX ACLs, and a shared mount enforces those. An ACL changed on
// the source since (access revoked, say) is a difference --check reports.
func TestSnapshotCheckSeesACLChange(t *testing.T) {
	aclTools(t)
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	f := filepath.Join(src, "d", "a.edf")
	os.WriteFile(f, []byte("v1"), 0o644)
	mustRun(t, "setfacl", "-m", "u:nobody:r--", f)
	idx := filepath.Join(e.tmp, "tree.index")
	e.makeIndex(src, idx)
	if r := e.run("snapshot", "--check", idx); r.code != 0 {
		t.Fatalf("check of a fresh index: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	mustRun(t, "setfacl", "-x", "u:nobody", f)
	mustRun(t, "setfacl", "-d", "-m", "u:nobody:r-x", filepath.Join(src, "d"))
	r := e.run("snapshot", "--check", idx)
	if r.code != 12 {
		t.Errorf("check after ACL changes: exit %d, want 12\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"0 added, 0 removed, 2 changed", "changed  d (acl)\n", "changed  d/a.edf (acl)\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
}
