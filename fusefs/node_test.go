package fusefs

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// pathContent serves each file as the bytes "contents of PATH", so a test
// sees which entry a read was served for.
type pathContent struct{ s *snapshot.Snapshot }

type bytesReader []byte

func (c pathContent) Open(idx uint32) (Reader, error) {
	return bytesReader("contents of " + c.s.Path(idx)), nil
}

func (b bytesReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, nil
	}
	return copy(p, b[off:]), nil
}

func (b bytesReader) Close() error { return nil }

func requireFuse(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tests need root and /dev/fuse in CI: euid %d, %v", os.Geteuid(), err)
		}
		t.Skip("mount tests need root and /dev/fuse")
	}
}

// mountSnapshot serves s at a new directory until the test ends.
func mountSnapshot(t *testing.T, s *snapshot.Snapshot) string {
	t.Helper()
	return mountConfig(t, Config{Snapshot: s, Content: pathContent{s}, Logger: zerolog.Nop()})
}

// mountConfig serves cfg at a new directory until the test ends.
func mountConfig(t testing.TB, cfg Config) string {
	t.Helper()
	requireFuse(t)
	mnt := t.TempDir()
	m, err := New(mnt, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		m.Wait()
	})
	return mnt
}

func fileEntry(name string, ino uint64, mode uint32, size int) snapshot.Entry {
	return snapshot.Entry{Name: name, Attr: snapshot.Attr{Mode: snapshot.ModeReg | mode, Nlink: 2, Ino: ino, Size: int64(size)}, Dir: snapshot.NoDir}
}

// sharedInoTree holds a/x and b/y, hard links of inode 9, and priv and pub,
// where pub carries priv's inode number as a crafted index could.
func sharedInoTree(t *testing.T) *snapshot.Snapshot {
	t.Helper()
	b := snapshot.NewBuilder()
	a, d := b.NewDir(), b.NewDir()
	dir := snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 2}
	da, db := dir, dir
	da.Ino, db.Ino = 2, 3
	b.SetDir(0, []snapshot.Entry{
		{Name: "a", Attr: da, Dir: a}, {Name: "b", Attr: db, Dir: d},
		fileEntry("priv", 20, 0o600, len("contents of priv")),
		fileEntry("pub", 20, 0o644, len("contents of pub")),
	})
	b.SetDir(a, []snapshot.Entry{fileEntry("x", 9, 0o644, len("contents of a/x"))})
	b.SetDir(d, []snapshot.Entry{fileEntry("y", 9, 0o644, len("contents of b/y"))})
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 4, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSharedInodeNumbersKeepTheirEntries: whichever name of an inode number
// is looked up first, every name serves its own entry, and stat shows the
// snapshot's inode number for both.
func TestSharedInodeNumbersKeepTheirEntries(t *testing.T) {
	for _, order := range [][]string{{"a/x", "b/y"}, {"b/y", "a/x"}, {"priv", "pub"}, {"pub", "priv"}} {
		mnt := mountSnapshot(t, sharedInoTree(t))
		for _, p := range order {
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(mnt, p), &st); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]uint64{true: 9, false: 20}[p == "a/x" || p == "b/y"]; st.Ino != want {
				t.Errorf("stat %s: ino %d, want %d", p, st.Ino, want)
			}
		}
		for _, p := range order {
			got, err := os.ReadFile(filepath.Join(mnt, p))
			if err != nil || string(got) != "contents of "+p {
				t.Errorf("order %v: read %s: %q, %v; want its own contents", order, p, got, err)
			}
			if st, err := os.Stat(filepath.Join(mnt, p)); err != nil || st.Mode().Perm() != map[bool]os.FileMode{true: 0o600, false: 0o644}[p == "priv"] {
				t.Errorf("order %v: stat %s: %v, %v", order, p, st.Mode(), err)
			}
		}
	}
}

// TestListingThenLookupKeepsEntries: a listing (READDIRPLUS looks every
// child up) registers nodes for all names first; lookups after it still
// reach their own entries.
func TestListingThenLookupKeepsEntries(t *testing.T) {
	mnt := mountSnapshot(t, sharedInoTree(t))
	for _, d := range []string{".", "a", "b"} {
		if _, err := os.ReadDir(filepath.Join(mnt, d)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"pub", "b/y"} {
		if got, err := os.ReadFile(filepath.Join(mnt, p)); err != nil || string(got) != "contents of "+p {
			t.Errorf("read %s after listing: %q, %v", p, got, err)
		}
	}
}
