package integration

import (
	"bytes"
	binenc "encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"golang.org/x/sys/unix"
)

// Indexes crafted the way anyone who can write an index file could: with
// the exported Builder and WriteIndex, so the checksum is valid, and for
// what the Builder would not write (unsorted or repeated names), edited
// afterwards with the checksum recomputed.

// attrOf is what a walk would record for path.
func attrOf(t *testing.T, path string) snapshot.Attr {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return snapshot.Attr{Mode: st.Mode, Uid: st.Uid, Gid: st.Gid, Nlink: uint32(st.Nlink), Size: st.Size,
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Atime: st.Atim.Nano(), Ino: st.Ino}
}

// craftIndex writes an index of src whose root lists entries, with src's
// own root identity so that the mount takes it for src's index.
func craftIndex(t *testing.T, src, path string, entries []snapshot.Entry) {
	t.Helper()
	b := snapshot.NewBuilder()
	// A crafter claims whatever a shared mount asks of an index.
	b.SetACLsRecorded()
	b.SetDir(0, entries)
	s, err := b.Build(attrOf(t, src))
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(src, &st)
	if _, err := snapshot.WriteIndex(path, s, snapshot.IndexInfo{Source: src, Host: "crafted", WalkStart: time.Now(), RootDev: st.Dev}); err != nil {
		t.Fatal(err)
	}
}

// editIndex replaces the one occurrence of old in the index at path by new,
// of the same length, and recomputes the checksum.
func editIndex(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(old) != len(new) || bytes.Count(b, []byte(old)) != 1 {
		t.Fatalf("cannot edit %q into %q in %s", old, new, path)
	}
	b = bytes.Replace(b, []byte(old), []byte(new), 1)
	binenc.LittleEndian.PutUint32(b[len(b)-8:], crc32.Checksum(b[:len(b)-8], crc32.MakeTable(crc32.Castagnoli)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func regular(name string, a snapshot.Attr) snapshot.Entry {
	a.Mode = a.Mode&^snapshot.ModeType | snapshot.ModeReg
	return snapshot.Entry{Name: name, Attr: a, Dir: snapshot.NoDir}
}

// TestCraftedIndexRefused: an index whose checksum is valid but whose names
// are not single, sorted path components, or which folds an entry onto the
// root's inode number, fails the mount with exit 11 and one line.
func TestCraftedIndexRefused(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644)
	f := attrOf(t, filepath.Join(src, "f"))
	two := []snapshot.Entry{regular("name-a", f), regular("name-b", f)}
	cases := []struct {
		name    string
		entries []snapshot.Entry
		edit    [2]string
		msg     string
	}{
		{"slash", []snapshot.Entry{regular("../../etc/passwd", f)}, [2]string{}, `name "../../etc/passwd" contains '/'`},
		{"dot dot", []snapshot.Entry{regular("..", f)}, [2]string{}, `name ".."`},
		{"dot", []snapshot.Entry{regular(".", f)}, [2]string{}, `name "."`},
		{"NUL", []snapshot.Entry{regular("f\x00x", f)}, [2]string{}, `contains NUL`},
		{"empty", []snapshot.Entry{regular("", f)}, [2]string{}, `empty name`},
		{"too long", []snapshot.Entry{regular(strings.Repeat("n", 300), f)}, [2]string{}, `over 255`},
		{"unsorted", two, [2]string{"name-aname-b", "name-bname-a"}, `is not after its sibling`},
		{"duplicate", two, [2]string{"name-aname-b", "name-aname-a"}, `"name-a" is not after its sibling "name-a"`},
		{"folded onto the root", []snapshot.Entry{regular("f", attrOf(t, src))}, [2]string{}, `the same as its directory or the root`},
	}
	for k, c := range cases {
		idx := filepath.Join(e.tmp, fmt.Sprintf("crafted-%d.index", k))
		craftIndex(t, src, idx, c.entries)
		if c.edit[0] != "" {
			editIndex(t, idx, c.edit[0], c.edit[1])
		}
		mnt := filepath.Join(e.tmp, fmt.Sprintf("m%d", k))
		r := e.run("mount", src, mnt, "--index", idx)
		if isMounted(mnt) {
			// Only a failing run gets here; leave nothing behind.
			e.run("unmount", mnt)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 11 || len(lines) != 1 || !strings.Contains(lines[0], "invalid: entry ") || !strings.Contains(lines[0], ` in ".": `) || !strings.Contains(lines[0], c.msg) || r.stdout != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 11 and one line naming the entry and %q", c.name, r.code, r.stdout, r.stderr, c.msg)
			continue
		}
		t.Logf("%s: %s", c.name, lines[0])
	}
	if left := e.daemons(); len(left) != 0 {
		t.Errorf("daemons left after refused mounts: %v", left)
	}
}

// craftedBase is a directory every user can traverse, unlike t.TempDir.
func craftedBase(t *testing.T) string {
	t.Helper()
	base := traversableDir(t, "cachefs-crafted-")
	return base
}

// runAs runs a command as cred and returns what it printed; whether it
// failed does not matter to its callers, which look for a secret in it.
func runAs(t *testing.T, cred *syscall.Credential, name string, args ...string) string {
	t.Helper()
	out, _ := combinedAs(t, cred, name, args...)
	return out
}

// TestCraftedIndexCannotServeOtherFiles: root mounts with --allow-other an
// index crafted to fold a public name onto the identity of a root-only file,
// one outside SOURCE (through a name that leaves SOURCE) and one inside it
// (through a valid name carrying its inode number). An ordinary user never
// reads either file's bytes, whatever order it lists and looks names up in.
func TestCraftedIndexCannotServeOtherFiles(t *testing.T) {
	_, cred := newUser(t, "crafted")
	base := craftedBase(t)
	src, outside := filepath.Join(base, "src"), filepath.Join(base, "outside")
	for _, d := range []string{src, outside} {
		os.Mkdir(d, 0o755)
	}
	const secretOut, secretIn = "ROOT-ONLY-OUTSIDE-SOURCE\n", "ROOT-ONLY-INSIDE-SOURCE\n"
	os.WriteFile(filepath.Join(outside, "secret"), []byte(secretOut), 0o600)
	os.WriteFile(filepath.Join(src, "priv"), []byte(secretIn), 0o600)
	os.WriteFile(filepath.Join(src, "pub"), []byte("public\n"), 0o644)
	pub := func(a snapshot.Attr) snapshot.Attr { a.Mode = snapshot.ModeReg | 0o644; return a }

	escaping := filepath.Join(base, "escaping.index")
	shadow := pub(attrOf(t, filepath.Join(outside, "secret")))
	craftIndex(t, src, escaping, []snapshot.Entry{regular("../outside/secret", shadow), regular("pub", shadow)})
	folded := filepath.Join(base, "folded.index")
	craftIndex(t, src, folded, []snapshot.Entry{
		regular("priv", attrOf(t, filepath.Join(src, "priv"))),
		regular("pub", pub(attrOf(t, filepath.Join(src, "priv")))),
	})

	orders := [][][]string{
		{{"ls", "-la", "."}, {"cat", "pub"}},
		{{"stat", "priv"}, {"cat", "pub"}},
		{{"cat", "pub"}, {"stat", "priv"}, {"ls", "-la", "."}, {"cat", "pub"}},
		{{"cat", "priv"}, {"cat", "pub"}, {"stat", "pub"}},
	}
	e := &env{t: t, tmp: filepath.Join(base, "tmp")}
	os.Mkdir(e.tmp, 0o700)
	for _, index := range []string{escaping, folded} {
		for k, order := range orders {
			mnt := filepath.Join(base, fmt.Sprintf("mnt-%s-%d", filepath.Base(index), k))
			os.Mkdir(mnt, 0o755)
			if !mountCrafted(e, src, mnt, index) {
				t.Logf("%s refused", filepath.Base(index))
				continue
			}
			// The user can reach the mount: a check below that finds
			// no secret in the output has looked.
			if out := runAs(t, cred, "ls", mnt); !strings.Contains(out, "pub") {
				t.Fatalf("%s: the user cannot list the mount: %q", filepath.Base(index), out)
			}
			for _, step := range order {
				args := append([]string(nil), step[1:]...)
				for i, a := range args {
					args[i] = filepath.Join(mnt, a)
				}
				out := runAs(t, cred, step[0], args...)
				if strings.Contains(out, "ROOT-ONLY") {
					t.Errorf("%s, order %v: %s %v printed a root-only file: %q", filepath.Base(index), order, step[0], step[1:], out)
				}
			}
			e.unmount(mnt)
		}
	}
}

// mountCrafted mounts src with a crafted index as root with --allow-other.
// An index refused with exit 11 is a pass for the caller's purpose: it
// reports false, and the caller has nothing to read.
func mountCrafted(e *env, src, mnt, index string) bool {
	e.t.Helper()
	r := e.run("mount", src, mnt, "--index", index, "--allow-other", "--prefetch=off")
	if r.code == 11 && strings.Contains(r.stderr, "invalid: entry") {
		return false
	}
	m := pidRe.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		e.t.Fatalf("mount with %s: exit %d, stdout %q, stderr %q", index, r.code, r.stdout, r.stderr)
	}
	pid, _ := strconv.Atoi(m[1])
	e.t.Cleanup(func() { cleanupMount(e.t, mnt, pid) })
	return true
}

// TestHardLinkSurvivesUnlinkOfFirstName: a/x and b/y are one file; after
// both are looked up through the mount and a/x is removed on the source,
// b/y still reads, since the source still has it unchanged.
func TestHardLinkSurvivesUnlinkOfFirstName(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	for _, d := range []string{"a", "b"} {
		os.MkdirAll(filepath.Join(src, d), 0o755)
	}
	want := []byte(strings.Repeat("linked bytes\n", 1000))
	os.WriteFile(filepath.Join(src, "a", "x"), want, 0o644)
	if err := os.Link(filepath.Join(src, "a", "x"), filepath.Join(src, "b", "y")); err != nil {
		t.Fatal(err)
	}
	e.mount(src, mnt, "--prefetch=off")
	var sx, sy syscall.Stat_t
	if err := syscall.Stat(filepath.Join(mnt, "a", "x"), &sx); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join(mnt, "b", "y"), &sy); err != nil {
		t.Fatal(err)
	}
	if sx.Ino != sy.Ino || sx.Nlink != 2 {
		t.Errorf("hard links show inode numbers %d and %d, nlink %d: want one number, nlink 2", sx.Ino, sy.Ino, sx.Nlink)
	}
	if err := os.Remove(filepath.Join(src, "a", "x")); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "b", "y")); err != nil || !bytes.Equal(got, want) {
		t.Errorf("b/y after a/x was removed on the source: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}
	e.unmount(mnt)
}
