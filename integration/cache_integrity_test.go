package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// dataFileOfSize finds the cache's data file of a source file by its
// length: data files are sparse at the source file's full size.
func dataFileOfSize(t *testing.T, cacheDir string, size int) string {
	t.Helper()
	var found []string
	filepath.Walk(filepath.Join(cacheDir, "blocks"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && !strings.Contains(fi.Name(), ".") && fi.Size() == int64(size) {
			found = append(found, p)
		}
		return nil
	})
	if len(found) != 1 {
		t.Fatalf("data files of %d bytes: %v, want one", size, found)
	}
	return found[0]
}

// damage zeroes, truncates and deletes the data files of the fixture's
// three files, as a tmp cleaner, an admin or bit rot would.
func damage(t *testing.T, f *cacheFixture, sizes map[string]int, truncTo int64) {
	t.Helper()
	zeroed := dataFileOfSize(t, f.cacheDir, sizes["d/zeroed"])
	fh, err := os.OpenFile(zeroed, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt(make([]byte, 1<<20), 1<<20)
	fh.Close()
	if err := os.Truncate(dataFileOfSize(t, f.cacheDir, sizes["d/truncated"]), truncTo); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(dataFileOfSize(t, f.cacheDir, sizes["d/deleted"])); err != nil {
		t.Fatal(err)
	}
}

// dropPages forgets the mount's page-cache copy of p, so the next read
// reaches the daemon again.
func dropPages(t *testing.T, p string) {
	t.Helper()
	fh, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedCacheFilesRefetched: cache data files zeroed, truncated or
// deleted under a running daemon (before it read them back, and again
// after, on the splice path) and between two daemons of one boot are
// fetched again and never served; status counts the damaged blocks.
func TestDamagedCacheFilesRefetched(t *testing.T) {
	sizes := map[string]int{"d/zeroed": 4 << 20, "d/truncated": 4<<20 + 4096, "d/deleted": 4<<20 + 8192}
	f := newCacheFixture(t, sizes, slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch=off", "--passthrough=off")
	if r := f.e.run("warm", mnt); r.code != 0 {
		t.Fatalf("warm exited %d: %s%s", r.code, r.stdout, r.stderr)
	}
	damage(t, f, sizes, 0)
	f.readAllEqual(t, mnt, "after damage under the running daemon")
	if n := num(t, statusOf(t, f.e, mnt), "cache.corrupt_blocks"); n <= 0 {
		t.Errorf("status counts %v damaged blocks", n)
	}

	// Every block has now been read back and checked: a truncation
	// reaches the daemon through the splice path.
	trunc := filepath.Join(mnt, "d/truncated")
	if err := os.Truncate(dataFileOfSize(t, f.cacheDir, sizes["d/truncated"]), 1<<20); err != nil {
		t.Fatal(err)
	}
	dropPages(t, trunc)
	if b := readAll(t, trunc); string(b) != string(f.files["d/truncated"]) {
		t.Errorf("spliced read of a truncated data file: %d bytes, want %d equal", len(b), len(f.files["d/truncated"]))
	}
	f.e.unmount(mnt)

	// Between two daemons of the same boot, passthrough allowed.
	damage(t, f, sizes, 1<<20)
	f.mount(mnt, "--prefetch=off")
	f.readAllEqual(t, mnt, "after damage between two daemons")
	f.e.unmount(mnt)
}

// TestStoringOffReadsOnlyWhatIsServed: when the cache cannot store (a
// budget smaller than one file, or a full cache disk), the daemon reads
// from the source little more than it serves.
func TestStoringOffReadsOnlyWhatIsServed(t *testing.T) {
	sizes := sizedFiles(10, "d/f%d", 3<<20)
	for _, why := range []string{"budget", "disk full"} {
		t.Run(why, func(t *testing.T) {
			f := newCacheFixture(t, sizes, slowfs.Options{})
			extra := []string{"--prefetch=off", "--cache-size", "4MiB"}
			if why == "disk full" {
				os.MkdirAll(f.cacheDir, 0o700)
				t.Cleanup(func() { unix.Unmount(f.cacheDir, unix.MNT_DETACH) })
				if err := unix.Mount("tmpfs", f.cacheDir, "tmpfs", 0, "size=8m,mode=0700"); err != nil {
					t.Fatalf("mounting a small tmpfs: %v", err)
				}
				extra = []string{"--prefetch=off", "--cache-size", "100%", "--log-file", filepath.Join(f.e.tmp, "cachefs.log")}
			}
			mnt := filepath.Join(f.e.tmp, "mnt")
			f.mount(mnt, extra...)
			f.readAllEqual(t, mnt, "with storing off")
			s := statusOf(t, f.e, mnt)
			f.e.unmount(mnt)
			fromSource, served, unstored := num(t, s, "cache.bytes_from_source"), num(t, s, "bytes_served"), num(t, s, "cache.uncached_bytes")
			ratio := fromSource / served
			t.Logf("%s: %.0f bytes from the source, %.0f served (%.3fx), %.0f served unstored", why, fromSource, served, ratio, unstored)
			if unstored <= 0 {
				t.Fatal("every byte was stored: the test did not test")
			}
			if ratio > 1.1 {
				t.Errorf("%.2f bytes from the source per byte served, want at most 1.1", ratio)
			}
		})
	}
}
