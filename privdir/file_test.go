package privdir

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cachefs/cachefs/internal/testutil"
)

// victim is a file of ours that a planted name points at.
func victim(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "victim")
	mustNil(t, os.WriteFile(p, []byte("keep me"), 0o644))
	return p
}

func wantUntouched(t *testing.T, p string) {
	t.Helper()
	if b, err := os.ReadFile(p); err != nil || string(b) != "keep me" {
		t.Errorf("%s changed: %q %v", p, b, err)
	}
}

func TestOpenAppend(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "cachefs.log")
	for _, line := range []string{"one\n", "two\n"} {
		f, err := OpenAppend(log)
		mustNil(t, err)
		_, err = f.WriteString(line)
		mustNil(t, err)
		mustNil(t, f.Close())
	}
	if b, _ := os.ReadFile(log); string(b) != "one\ntwo\n" {
		t.Errorf("log holds %q", b)
	}
	if m := mode(t, log); m != 0o600 {
		t.Errorf("new log has mode %v", m)
	}
}

func TestOpenAppendRefusesPlantedNames(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	v := victim(t)

	link := filepath.Join(dir, "link.log")
	mustNil(t, os.Symlink(v, link))
	_, err := OpenAppend(link)
	wantRefusal(t, err, link, "is a symlink")

	hard := filepath.Join(dir, "hard.log")
	mustNil(t, os.Link(v, hard))
	_, err = OpenAppend(hard)
	wantRefusal(t, err, hard, "2 hard links")
	wantUntouched(t, v)

	theirs := filepath.Join(dir, "theirs.log")
	mustNil(t, os.WriteFile(theirs, nil, 0o666))
	mustNil(t, os.Chown(theirs, other, other))
	_, err = OpenAppend(theirs)
	wantRefusal(t, err, theirs, "owned by uid 54321")

	// A FIFO with no reader: the open must fail at once, not block.
	fifo := filepath.Join(dir, "fifo.log")
	mustNil(t, syscall.Mkfifo(fifo, 0o600))
	_, err = OpenAppend(fifo)
	wantRefusal(t, err, fifo, "not a regular file")
}

func TestReadOwned(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	mine := filepath.Join(dir, "rec.json")
	mustNil(t, os.WriteFile(mine, []byte("{}"), 0o600))
	if b, err := ReadOwned(mine, 10); err != nil || string(b) != "{}" {
		t.Errorf("ReadOwned: %q %v", b, err)
	}
	if _, err := ReadOwned(mine, 1); err == nil {
		t.Error("ReadOwned read past its limit")
	}
	link := filepath.Join(dir, "link.json")
	mustNil(t, os.Symlink(mine, link))
	_, err := ReadOwned(link, 10)
	wantRefusal(t, err, link, "is a symlink")
	mustNil(t, os.Chown(mine, other, other))
	_, err = ReadOwned(mine, 10)
	wantRefusal(t, err, mine, "owned by uid 54321")
}

func TestWriteReplace(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	v := victim(t)
	// The names an earlier version wrote through: the final name and a
	// fixed temporary one, both planted as links.
	mustNil(t, os.Symlink(v, filepath.Join(dir, "r.json")))
	mustNil(t, os.Symlink(v, filepath.Join(dir, "r.json.tmp")))
	mustNil(t, WriteReplace(dir, "r.json", []byte("new")))
	wantUntouched(t, v)
	if b, err := os.ReadFile(filepath.Join(dir, "r.json")); err != nil || string(b) != "new" {
		t.Errorf("r.json holds %q %v", b, err)
	}
	if m := mode(t, filepath.Join(dir, "r.json")); m != 0o600 {
		t.Errorf("r.json has mode %v", m)
	}
	ents := testutil.ReadDir(t, dir)
	if len(ents) != 2 {
		t.Errorf("temporary files left: %v", ents)
	}
}
