package privdir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cachefs/cachefs/internal/testutil"
)

// other is a uid that belongs to nobody on the test machine: files chowned
// to it stand for another user's.
const other = 54321

// requireRoot: chown to another uid needs root, which CI has.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("privdir tests need root to chown files to another uid")
	}
	t.Skip("privdir tests need root to chown files to another uid")
}

// sharedDir makes a /tmp-like directory: world-writable and sticky (set
// with syscall.Chmod: os.Chmod takes the sticky bit only as os.ModeSticky).
func sharedDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "shared")
	mustNil(t, os.Mkdir(d, 0o755))
	mustNil(t, syscall.Chmod(d, 0o1777))
	return d
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	mustNil(t, err)
	return fi.Mode()
}

// wantRefusal checks err is a refusal naming path and containing what.
func wantRefusal(t *testing.T, err error, path, what string) {
	t.Helper()
	var pe *Error
	if !errors.Is(err, ErrNotPrivate) || !errors.As(err, &pe) {
		t.Fatalf("got %v, want a refusal of %s", err, path)
	}
	if pe.Path != path || !strings.Contains(err.Error(), what) {
		t.Fatalf("got %q, want it to name %s and say %q", err, path, what)
	}
}

func TestMakeCreatesPrivateDirs(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	// A umask that takes the owner's write bit: Make must still end at 0700.
	old := syscall.Umask(0o277)
	defer syscall.Umask(old)
	p, err := Make(shared, "cachefs-0", "src-abc")
	mustNil(t, err)
	if want := filepath.Join(shared, "cachefs-0", "src-abc"); p != want {
		t.Fatalf("Make returned %s, want %s", p, want)
	}
	for _, d := range []string{filepath.Dir(p), p} {
		if m := mode(t, d); m != os.ModeDir|0o700 {
			t.Errorf("%s has mode %v, want drwx------", d, m)
		}
	}
	if _, err := Make(shared, "cachefs-0", "src-abc"); err != nil {
		t.Errorf("adopting the directories just made: %v", err)
	}
	if q, err := Find(shared, "cachefs-0", "src-abc"); err != nil || q != p {
		t.Errorf("Find: %s %v", q, err)
	}
}

func TestMakeRefusesAnotherUsersDir(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	planted := filepath.Join(shared, "cachefs-0")
	mustNil(t, os.Mkdir(planted, 0o777))
	mustNil(t, os.Chown(planted, other, other))
	_, err := Make(shared, "cachefs-0", "src-abc")
	wantRefusal(t, err, planted, "is owned by uid 54321, not by you")
	if ents := testutil.ReadDir(t, planted); len(ents) != 0 {
		t.Errorf("Make wrote into the other user's directory: %v", ents)
	}
}

func TestMakeRefusesSymlinks(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	target := t.TempDir() // ours, 0700: still not to be reached by a link
	mustNil(t, os.Symlink(target, filepath.Join(shared, "cachefs-0")))
	_, err := Make(shared, "cachefs-0", "run")
	wantRefusal(t, err, filepath.Join(shared, "cachefs-0"), "is a symlink")

	// One level down: our own directory, a link planted inside it.
	shared = sharedDir(t)
	own, err := Make(shared, "cachefs-0")
	mustNil(t, err)
	mustNil(t, os.Symlink(target, filepath.Join(own, "run")))
	_, err = Make(shared, "cachefs-0", "run")
	wantRefusal(t, err, filepath.Join(own, "run"), "is a symlink")
	if ents := testutil.ReadDir(t, target); len(ents) != 0 {
		t.Errorf("Make wrote through the link: %v", ents)
	}
}

func TestMakeRefusesLooseModes(t *testing.T) {
	requireRoot(t)
	for _, m := range []uint32{0o755, 0o770, 0o701, 0o2770} {
		shared := sharedDir(t)
		d := filepath.Join(shared, "cachefs-0")
		mustNil(t, os.Mkdir(d, 0o700))
		mustNil(t, syscall.Chmod(d, m))
		before := mode(t, d)
		_, err := Make(shared, "cachefs-0", "x")
		wantRefusal(t, err, d, "not 0700")
		if after := mode(t, d); after != before {
			t.Errorf("mode %v changed to %v", before, after)
		}
	}
}

func TestMakeRefusesNonDirectories(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	fifo := filepath.Join(shared, "cachefs-0")
	mustNil(t, syscall.Mkfifo(fifo, 0o600))
	_, err := Make(shared, "cachefs-0")
	wantRefusal(t, err, fifo, "is not a directory")
}

func TestMakeChecksTheSharedParentsAncestry(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	cases := []struct {
		name   string
		mode   uint32
		owner  int
		refuse string
	}{
		{"sticky world-writable", 0o1777, 0, ""},
		{"root's 0755", 0o755, 0, ""},
		{"world-writable without sticky", 0o777, 0, "has mode 0777"},
		{"group-writable without sticky", 0o775, 0, "has mode 0775"},
		{"another user's", 0o755, other, "owned by uid 54321"},
	}
	for _, c := range cases {
		d := filepath.Join(base, strings.ReplaceAll(c.name, " ", "_"))
		mustNil(t, os.Mkdir(d, 0o700))
		mustNil(t, syscall.Chmod(d, c.mode))
		mustNil(t, os.Chown(d, c.owner, c.owner))
		// The check covers every directory above the shared one, too.
		shared := filepath.Join(d, "tmp")
		mustNil(t, os.Mkdir(shared, 0o755))
		mustNil(t, syscall.Chmod(shared, 0o1777))
		_, err := Make(shared, "cachefs-0")
		if c.refuse == "" {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
			continue
		}
		wantRefusal(t, err, d, c.refuse)
		if pe := (*Error)(nil); errors.As(err, &pe) && !pe.Shared {
			t.Errorf("%s: a refused shared parent is not marked Shared", c.name)
		}
		if _, err := os.Lstat(filepath.Join(shared, "cachefs-0")); err == nil {
			t.Errorf("%s: created a directory below a refused parent", c.name)
		}
	}
}

func TestMakeResolvesTheSharedParent(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	link := filepath.Join(t.TempDir(), "tmp")
	mustNil(t, os.Symlink(shared, link))
	p, err := Make(link, "cachefs-0")
	mustNil(t, err)
	if want := filepath.Join(shared, "cachefs-0"); p != want {
		t.Errorf("Make returned %s, want the resolved %s", p, want)
	}
}

func TestFindCreatesNothing(t *testing.T) {
	requireRoot(t)
	shared := sharedDir(t)
	if _, err := Find(shared, "cachefs-0", "run"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Find of a missing directory: %v, want ErrNotExist", err)
	}
	if ents := testutil.ReadDir(t, shared); len(ents) != 0 {
		t.Errorf("Find created %v", ents)
	}
	if _, err := Make(shared, ".."); err == nil {
		t.Error(`Make accepted ".." as a private directory`)
	}
}

func TestAdopt(t *testing.T) {
	requireRoot(t)
	base := t.TempDir()
	fresh := filepath.Join(base, "a", "b", "cache")
	mustNil(t, Adopt(fresh))
	if m := mode(t, fresh); m != os.ModeDir|0o700 {
		t.Errorf("new explicit cache dir: %v", m)
	}

	loose := filepath.Join(base, "loose")
	mustNil(t, os.Mkdir(loose, 0o700))
	mustNil(t, os.Chmod(loose, 0o775))
	mustNil(t, Adopt(loose))
	if m := mode(t, loose); m != os.ModeDir|0o700 {
		t.Errorf("our own 0775 directory was not tightened: %v", m)
	}

	theirs := filepath.Join(base, "theirs")
	mustNil(t, os.Mkdir(theirs, 0o700))
	mustNil(t, os.Chmod(theirs, 0o755))
	mustNil(t, os.Chown(theirs, other, other))
	wantRefusal(t, Adopt(theirs), theirs, "owned by uid 54321")
	if m := mode(t, theirs); m != os.ModeDir|0o755 {
		t.Errorf("Adopt changed the mode of another user's directory to %v", m)
	}

	link := filepath.Join(base, "link")
	mustNil(t, os.Symlink(fresh, link))
	wantRefusal(t, Adopt(link), link, "is a symlink")

	file := filepath.Join(base, "file")
	mustNil(t, os.WriteFile(file, nil, 0o600))
	wantRefusal(t, Adopt(file), file, "is not a directory")
}
