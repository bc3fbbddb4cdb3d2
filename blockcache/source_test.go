package blockcache

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/internal/testutil"
	"github.com/cachefs/cachefs/snapshot"
	"golang.org/x/sys/unix"
)

// sourceTree is a source root on t.TempDir() with a sibling directory
// outside it, which no open of the source may touch.
type sourceTree struct {
	root, outside string
	dev           uint64
}

func newSourceTree(t *testing.T) *sourceTree {
	t.Helper()
	base := t.TempDir()
	s := &sourceTree{root: filepath.Join(base, "src"), outside: filepath.Join(base, "outside")}
	for _, d := range []string{s.root, filepath.Join(s.root, "d"), s.outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(s.root, &st); err != nil {
		t.Fatal(err)
	}
	s.dev = st.Dev
	return s
}

// file writes rel under the root and returns its key as a snapshot would.
func (s *sourceTree) file(t *testing.T, rel, content string) Key {
	t.Helper()
	p := filepath.Join(s.root, rel)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return s.key(t, rel)
}

func (s *sourceTree) key(t *testing.T, rel string) Key {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(s.root, rel), &st); err != nil {
		t.Fatal(err)
	}
	return Key{Path: rel, Ino: snapshot.MixIno(st.Dev, st.Ino, s.dev), Size: st.Size, Mtime: st.Mtim.Nano()}
}

// replace swaps rel for whatever make creates at its path.
func (s *sourceTree) replace(t *testing.T, rel string, make func(p string) error) {
	t.Helper()
	p := filepath.Join(s.root, rel)
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if err := make(p); err != nil {
		t.Fatal(err)
	}
}

// watchSecret writes a file named f in the directory outside the root and
// starts counting the opens there.
func (s *sourceTree) watchSecret(t *testing.T) func() int {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.outside, "f"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	return testutil.WatchOpens(t, s.outside)
}

func (s *sourceTree) source(t *testing.T) *DirSource {
	t.Helper()
	d, err := NewDirSource(s.root, s.dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// bothResolvers runs f with openat2 and with the component walk used
// where openat2 is missing.
func bothResolvers(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("walk", func(t *testing.T) {
		noOpenat2.Store(true)
		defer noOpenat2.Store(false)
		f(t)
	})
}

// openGuarded opens key, failing the test instead of hanging if the open
// blocks (a FIFO opened without O_NONBLOCK waits for a writer forever).
func openGuarded(t *testing.T, d *DirSource, key Key) (SourceFile, error) {
	t.Helper()
	type res struct {
		f   SourceFile
		err error
	}
	ch := make(chan res, 1)
	go func() {
		f, err := d.Open(key)
		ch <- res{f, err}
	}()
	select {
	case r := <-ch:
		return r.f, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("open of %s has not returned: blocked", key.Path)
		return nil, nil
	}
}

// wantChanged checks an open refused as a change of the source: EIO.
func wantChanged(t *testing.T, f SourceFile, err error) {
	t.Helper()
	if f != nil {
		f.Close()
	}
	if !errors.Is(err, ErrChanged) || !errors.Is(err, syscall.EIO) {
		t.Errorf("open: %v, want ErrChanged (EIO)", err)
	}
}

func TestDirSourceReadsRegularFile(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		key := s.file(t, "d/f", "hello")
		f, err := openGuarded(t, s.source(t), key)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		// Opened non-blocking, read blocking.
		if fl, err := unix.FcntlInt(f.(*os.File).Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
			t.Errorf("source file flags %#o %v: O_NONBLOCK left set", fl, err)
		}
		b := make([]byte, 5)
		if n, err := f.ReadAt(b, 0); n != 5 || string(b) != "hello" {
			t.Errorf("ReadAt = %d %q %v", n, b[:n], err)
		}
	})
}

func TestDirSourceIdentity(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		d := s.source(t)
		key := s.file(t, "d/f", "hello")
		for name, k := range map[string]Key{
			"size":  {Path: key.Path, Ino: key.Ino, Size: key.Size + 1, Mtime: key.Mtime},
			"mtime": {Path: key.Path, Ino: key.Ino, Size: key.Size, Mtime: key.Mtime + 1},
			"ino":   {Path: key.Path, Ino: key.Ino + 1, Size: key.Size, Mtime: key.Mtime},
		} {
			f, err := openGuarded(t, d, k)
			if !errors.Is(err, ErrChanged) {
				t.Errorf("%s differs: %v, want ErrChanged", name, err)
			}
			if f != nil {
				f.Close()
			}
		}
		// Same size and mtime, another inode: a file replaced, not the one
		// the snapshot saw.
		mt := time.Unix(0, key.Mtime)
		s.replace(t, "d/f", func(p string) error {
			if err := os.WriteFile(p, []byte("HELLO"), 0o644); err != nil {
				return err
			}
			return os.Chtimes(p, mt, mt)
		})
		keep, _ := os.Create(filepath.Join(s.root, "keep")) // the old inode number is not reused at once
		defer keep.Close()
		f, err := openGuarded(t, d, key)
		if s.key(t, "d/f").Ino != key.Ino {
			wantChanged(t, f, err)
		} else if f != nil {
			f.Close()
		}
	})
}

func TestDirSourceRefusesFIFO(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		d := s.source(t)
		key := s.file(t, "d/f", "hello")
		s.replace(t, "d/f", func(p string) error { return unix.Mkfifo(p, 0o644) })
		for range 3 {
			f, err := openGuarded(t, d, key)
			wantChanged(t, f, err)
		}
	})
}

// A device reached through a symlinked directory is never opened; one
// swapped in for the file itself is refused (opened non-blocking, then
// refused on its type).
func TestDirSourceRefusesDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("creating a device node needs root")
	}
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		d := s.source(t)
		key := s.file(t, "d/f", "hello")
		null := func(p string) error { return unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) }
		if err := null(filepath.Join(s.outside, "f")); err != nil {
			t.Fatal(err)
		}
		opens := testutil.WatchOpens(t, s.outside)
		s.replace(t, "d", func(p string) error { return os.Symlink(s.outside, p) })
		f, err := openGuarded(t, d, key)
		wantChanged(t, f, err)
		if n := opens(); n != 0 {
			t.Errorf("the device outside the source was opened %d times", n)
		}

		s.replace(t, "d", func(p string) error { return os.Mkdir(p, 0o755) })
		s.replace(t, "d/f", func(p string) error { return os.Symlink("/dev/null", p) })
		f, err = openGuarded(t, d, key)
		wantChanged(t, f, err)
		s.replace(t, "d/f", null)
		f, err = openGuarded(t, d, key)
		wantChanged(t, f, err)
	})
}

// A directory on the path swapped for a symlink to a directory outside the
// source: nothing outside is opened, not even to be refused afterwards.
func TestDirSourceSymlinkedDirectory(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		d := s.source(t)
		key := s.file(t, "d/f", "hello")
		if err := unix.Mkfifo(filepath.Join(s.outside, "fifo"), 0o644); err != nil {
			t.Fatal(err)
		}
		opens := s.watchSecret(t)
		s.replace(t, "d", func(p string) error { return os.Symlink(s.outside, p) })
		f, err := openGuarded(t, d, key)
		wantChanged(t, f, err)
		f, err = openGuarded(t, d, Key{Path: "d/fifo", Ino: key.Ino, Size: key.Size, Mtime: key.Mtime})
		wantChanged(t, f, err)
		if n := opens(); n != 0 {
			t.Errorf("%d opens outside the source root", n)
		}
		// The watch does see an open there.
		f, err = os.Open(filepath.Join(s.outside, "f"))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if n := opens(); n != 1 {
			t.Errorf("inotify saw %d opens of the outside file, want 1", n)
		}
	})
}

func TestDirSourceRefusesUnsafePaths(t *testing.T) {
	bothResolvers(t, func(t *testing.T) {
		s := newSourceTree(t)
		d := s.source(t)
		key := s.file(t, "d/f", "hello")
		opens := s.watchSecret(t)
		for _, p := range []string{"../outside/f", "d/../../outside/f", "d/../f", filepath.Join(s.outside, "f"),
			"", "d//f", "./d/f", "d/f/", "d/.", "d/f\x00"} {
			k := key
			k.Path = p
			f, err := openGuarded(t, d, k)
			if f != nil {
				f.Close()
			}
			if !errors.Is(err, ErrUnsafePath) || !errors.Is(err, syscall.EIO) {
				t.Errorf("open %q: %v, want ErrUnsafePath (EIO)", p, err)
			}
		}
		if n := opens(); n != 0 {
			t.Errorf("%d opens outside the source root", n)
		}
	})
}

// Inode numbers were mixed with the root's device when the snapshot was
// taken; a root now on another device (a remount) with the same inodes,
// sizes and mtimes is the same tree.
func TestDirSourceRootOnNewDevice(t *testing.T) {
	s := newSourceTree(t)
	key := s.file(t, "d/f", "hello")
	oldDev := s.dev + 1
	d, err := NewDirSource(s.root, oldDev)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	f, err := openGuarded(t, d, key)
	if err != nil {
		t.Fatalf("same inode, size and mtime under a remounted root: %v", err)
	}
	f.Close()
	key.Ino++
	f, err = openGuarded(t, d, key)
	wantChanged(t, f, err)
}

// A root descriptor that no longer works is replaced by opening the root's
// path again, once; a closed source stays closed.
func TestDirSourceReopensRoot(t *testing.T) {
	s := newSourceTree(t)
	key := s.file(t, "d/f", "hello")
	d := s.source(t)
	d.root.Load().f.Close()
	f, err := openGuarded(t, d, key)
	if err != nil {
		t.Fatalf("after the root descriptor went: %v", err)
	}
	f.Close()
	d.Close()
	if f, err := d.Open(key); err == nil {
		f.Close()
		t.Error("open after Close succeeded")
	}
}

// BenchmarkSourceOpen compares opening and checking a small file the
// confined way with the plain path open it replaced.
func BenchmarkSourceOpen(b *testing.B) {
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, "a/b/c"), 0o755)
	p := filepath.Join(root, "a/b/c/f")
	os.WriteFile(p, []byte("small"), 0o644)
	var st unix.Stat_t
	unix.Stat(root, &st)
	dev := st.Dev
	unix.Stat(p, &st)
	key := Key{Path: "a/b/c/f", Ino: st.Ino, Size: st.Size, Mtime: st.Mtim.Nano()}
	b.Run("path-open+fstat", func(b *testing.B) {
		for b.Loop() {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), p)
			if err := unix.Fstat(fd, &st); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	for _, walk := range []bool{false, true} {
		name := "openat2+fstat"
		if walk {
			name = "walk+fstat"
		}
		b.Run(name, func(b *testing.B) {
			noOpenat2.Store(walk)
			defer noOpenat2.Store(false)
			d, err := NewDirSource(root, dev)
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			for b.Loop() {
				f, err := d.Open(key)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}
