package push

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// fixture is a SOURCE, its snapshot, and an empty upper layer.
type fixture struct {
	src, upper, outside string
	base                *snapshot.Snapshot
}

func newFixture(t *testing.T, files map[string]string) *fixture {
	t.Helper()
	d := t.TempDir()
	f := &fixture{src: filepath.Join(d, "src"), upper: filepath.Join(d, "upper"), outside: filepath.Join(d, "outside")}
	for _, p := range []string{f.src, f.upper, f.outside} {
		os.Mkdir(p, 0o755)
	}
	// An hour old: files written through the view in the same clock tick
	// would otherwise pass the size-and-mtime check.
	old := time.Now().Add(-time.Hour)
	for name, c := range files {
		write(t, filepath.Join(f.src, name), c)
		os.Chtimes(filepath.Join(f.src, name), old, old)
	}
	s, err := snapshot.Walk(context.Background(), f.src, snapshot.WalkOptions{Walkers: 4, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	f.base = s
	return f
}

func write(t *testing.T, p, c string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) run(t *testing.T, o Options) *Result {
	t.Helper()
	o.Source, o.Upper, o.Base, o.Logger = f.src, f.upper, f.base, zerolog.Nop()
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	return r
}

func content(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return string(b)
}

func TestNewChangedAndConflict(t *testing.T) {
	f := newFixture(t, map[string]string{"a": "a1", "b": "b1"})
	write(t, filepath.Join(f.upper, "a"), "a2")
	write(t, filepath.Join(f.upper, "b"), "b2")
	write(t, filepath.Join(f.upper, "new/n"), "n")
	write(t, filepath.Join(f.upper, "x.lock"), "")
	// b changes on SOURCE after the snapshot; a later mtime makes sure.
	write(t, filepath.Join(f.src, "b"), "b-other")
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(f.src, "b"), later, later)

	r := f.run(t, Options{})
	if r.Copied != 2 || r.Conflicts != 1 || r.Excluded != 1 || r.Dirs != 1 {
		t.Errorf("result %+v", r)
	}
	for p, want := range map[string]string{"a": "a2", "b": "b-other", "new/n": "n"} {
		if got := content(t, filepath.Join(f.src, p)); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if _, err := os.Stat(filepath.Join(f.src, "x.lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("x.lock pushed: %v", err)
	}
	if r = f.run(t, Options{}); r.Copied != 0 || r.Conflicts != 1 {
		t.Errorf("second push %+v: want nothing copied, the conflict again", r)
	}
	if r = f.run(t, Options{Force: true}); r.Copied != 1 || content(t, filepath.Join(f.src, "b")) != "b2" {
		t.Errorf("--force %+v: b is %q", r, content(t, filepath.Join(f.src, "b")))
	}
}

// A directory of SOURCE swapped for a symlink after the snapshot is not
// followed: nothing is written where it points.
func TestSymlinkedSourceDirNotFollowed(t *testing.T) {
	f := newFixture(t, map[string]string{"d/keep": "k"})
	write(t, filepath.Join(f.upper, "d/evil"), "payload")
	os.RemoveAll(filepath.Join(f.src, "d"))
	if err := os.Symlink(f.outside, filepath.Join(f.src, "d")); err != nil {
		t.Fatal(err)
	}
	r := f.run(t, Options{Force: true})
	if r.Failed != 1 || r.Copied != 0 {
		t.Errorf("result %+v: want the directory refused", r)
	}
	if ents, _ := os.ReadDir(f.outside); len(ents) != 0 {
		t.Errorf("the push wrote outside SOURCE: %v", ents)
	}
}

// A file of SOURCE swapped for a symlink is replaced by the rename, never
// written through.
func TestSymlinkedSourceFileNotWrittenThrough(t *testing.T) {
	f := newFixture(t, map[string]string{"f": "old"})
	write(t, filepath.Join(f.upper, "f"), "new")
	victim := filepath.Join(f.outside, "victim")
	write(t, victim, "victim")
	os.Remove(filepath.Join(f.src, "f"))
	os.Symlink(victim, filepath.Join(f.src, "f"))
	f.run(t, Options{Force: true})
	if got := content(t, victim); got != "victim" {
		t.Errorf("the push wrote through a symlink: victim holds %q", got)
	}
	if fi, err := os.Lstat(filepath.Join(f.src, "f")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("f is not the pushed regular file: %v %v", fi, err)
	}
}

// A directory of the upper layer replaced by a symlink (a user can make
// one through the view) is pushed as a symlink, never read through.
func TestSymlinkInUpperNotFollowed(t *testing.T) {
	f := newFixture(t, map[string]string{"keep": "k"})
	write(t, filepath.Join(f.outside, "secret"), "secret")
	os.Symlink(f.outside, filepath.Join(f.upper, "d"))
	r := f.run(t, Options{})
	if r.Symlinks != 1 || r.Copied != 0 {
		t.Errorf("result %+v", r)
	}
	if _, err := os.Stat(filepath.Join(f.src, "secret")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file behind a symlink in the upper layer was copied: %v", err)
	}
}

// Temporaries a killed push left are removed by the next push into the
// directory.
func TestStaleTemporariesRemoved(t *testing.T) {
	f := newFixture(t, map[string]string{"d/a": "a"})
	stale := filepath.Join(f.src, "d", TempPrefix+"0123456789abcdef")
	write(t, stale, "partial")
	write(t, filepath.Join(f.upper, "d/b"), "b")
	f.run(t, Options{})
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary left: %v", err)
	}
}

func TestDeleteOnlyUnchanged(t *testing.T) {
	f := newFixture(t, map[string]string{"gone": "g", "changed": "c"})
	// overlayfs marks a deletion with a 0/0 character device.
	for _, n := range []string{"gone", "changed"} {
		if err := mknodWhiteout(filepath.Join(f.upper, n)); err != nil {
			t.Skipf("cannot make a whiteout here: %v", err)
		}
	}
	write(t, filepath.Join(f.src, "changed"), "changed on the source")
	if r := f.run(t, Options{}); r.NotPushed != 2 {
		t.Errorf("without --delete: %+v", r)
	}
	r := f.run(t, Options{Delete: true})
	if r.Deleted != 1 || r.Conflicts != 1 {
		t.Errorf("--delete: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(f.src, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("gone is still there: %v", err)
	}
	if content(t, filepath.Join(f.src, "changed")) != "changed on the source" {
		t.Error("a file changed on the source was deleted")
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	f := newFixture(t, map[string]string{"a": "a"})
	write(t, filepath.Join(f.upper, "n/m"), "m")
	r := f.run(t, Options{DryRun: true})
	if r.Copied != 1 || r.Dirs != 1 {
		t.Errorf("dry run %+v", r)
	}
	if _, err := os.Stat(filepath.Join(f.src, "n")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created n: %v", err)
	}
}

// The same bytes written on SOURCE since the snapshot (another job made
// the same repair) are not a conflict.
func TestSameContentNoConflict(t *testing.T) {
	f := newFixture(t, map[string]string{"events.tsv": "broken"})
	write(t, filepath.Join(f.upper, "events.tsv"), "repaired")
	write(t, filepath.Join(f.upper, "new.json"), "{}")
	write(t, filepath.Join(f.src, "events.tsv"), "repaired")
	write(t, filepath.Join(f.src, "new.json"), "{}")
	if r := f.run(t, Options{}); r.Conflicts != 0 || r.Unchanged != 2 {
		t.Errorf("result %+v: want both unchanged", r)
	}
}

func TestSetIDBitsDropped(t *testing.T) {
	f := newFixture(t, map[string]string{"a": "a"})
	p := filepath.Join(f.upper, "tool")
	write(t, p, "#!/bin/sh")
	os.Chmod(p, 0o6755)
	f.run(t, Options{})
	if fi, err := os.Stat(filepath.Join(f.src, "tool")); err != nil || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("pushed tool: %v %v; want 0755 without set-id bits", fi.Mode(), err)
	}
}
