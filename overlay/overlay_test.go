package overlay

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachefs/cachefs/internal/testutil"
	"github.com/cachefs/cachefs/privdir"
)

func TestPrepareLayout(t *testing.T) {
	cache := t.TempDir()
	os.Chmod(cache, 0o700)
	l, err := Prepare(cache, uint32(os.Geteuid()), uint32(os.Getegid()), 0o700)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{l.Dir, l.Lower, l.Upper, l.Work} {
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: %v %v, want a directory closed to others", p, fi, err)
		}
	}
	// A shared view's root carries the source root's mode.
	if _, err := Prepare(cache, uint32(os.Geteuid()), uint32(os.Getegid()), 0o40755); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(l.Upper); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("upper root: %v %v, want mode 0755", fi, err)
	}
	if fi, err := os.Stat(l.Dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the layers' directory: %v %v, want mode 0700", fi, err)
	}
}

func TestPreparePlantedSymlinkRefused(t *testing.T) {
	cache := t.TempDir()
	os.Chmod(cache, 0o700)
	elsewhere := t.TempDir()
	os.Symlink(elsewhere, filepath.Join(cache, "writable"))
	if _, err := Prepare(cache, 0, 0, 0o700); !errors.Is(err, privdir.ErrNotPrivate) {
		t.Errorf("Prepare over a symlink: %v, want a privdir refusal", err)
	}
	if ents := testutil.ReadDir(t, elsewhere); len(ents) != 0 {
		t.Errorf("Prepare wrote through the symlink: %v", ents)
	}
}

func TestDiscardKeepsDirsAndFollowsNoLink(t *testing.T) {
	cache := t.TempDir()
	os.Chmod(cache, 0o700)
	l, err := Prepare(cache, uint32(os.Geteuid()), uint32(os.Getegid()), 0o700)
	if err != nil {
		t.Fatal(err)
	}
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), []byte("k"), 0o644)
	os.MkdirAll(filepath.Join(l.Upper, "d"), 0o755)
	os.WriteFile(filepath.Join(l.Upper, "d", "f"), []byte("12345"), 0o644)
	os.Symlink(outside, filepath.Join(l.Upper, "link"))
	if files, bytes, err := Usage(l.Upper); err != nil || files != 1 || bytes != 5 {
		t.Errorf("Usage: %d files, %d bytes, %v; want 1, 5", files, bytes, err)
	}
	if err := Discard(l); err != nil {
		t.Fatal(err)
	}
	if ents := testutil.ReadDir(t, l.Upper); len(ents) != 0 {
		t.Errorf("upper not emptied: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("Discard followed a symlink: %v", err)
	}
}

func TestIsWritableFSType(t *testing.T) {
	for typ, want := range map[string]bool{"overlay": true, "fuse.fuse-overlayfs": true, "fuse.cachefs": false, "ext4": false} {
		if IsWritableFSType(typ) != want {
			t.Errorf("IsWritableFSType(%q) = %v", typ, !want)
		}
	}
}
