package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// resident reports whether every page of the file at p is in the kernel's
// page cache, without reading it: mapping a file reads nothing, and
// mincore only looks.
func resident(t *testing.T, p string) bool {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	page := os.Getpagesize()
	vec := make([]byte, (len(m)+page-1)/page)
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal(e)
	}
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}

// TestPrefetchedSmallFilesReachThePageCache: the small files the
// prefetcher fetched whole are handed to the kernel's page cache as soon
// as the kernel holds their inodes, so the job's first read of each is
// answered by the kernel, as from a stage-in to local disk, with no round
// trip to the daemon; the bytes are the source's.
func TestPrefetchedSmallFilesReachThePageCache(t *testing.T) {
	f := newCacheFixture(t, smallTree(60, 3000), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--warm", ".")
	f.waitWarmEnd(t, mnt)
	if s := f.status(t, mnt); s.BytesServed != 0 {
		t.Fatalf("the daemon served %d bytes before any read", s.BytesServed)
	}
	// Other work on the machine may drop the caches between the check
	// and the reads: an attempt spoilt so is made again.
	for try := 1; ; try++ {
		f.waitResident(t, mnt)
		before := f.status(t, mnt).BytesServed
		f.readAllEqual(t, mnt, "read from the page cache")
		served := f.status(t, mnt).BytesServed - before
		if served == 0 {
			break
		}
		if try == 3 {
			t.Fatalf("the daemon served %d bytes to reads of files in the page cache", served)
		}
	}
	f.e.unmount(mnt)
}

// waitResident waits until every file of the fixture is in the page cache
// of mnt, looking each up again while it is not, in case the kernel
// dropped it (a lookup is what lets the daemon hand a file over). The
// deadline only catches a hang.
func (f *cacheFixture) waitResident(t *testing.T, mnt string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for name := range f.files {
		p := filepath.Join(mnt, name)
		for {
			if _, err := os.Lstat(p); err != nil {
				t.Fatal(err)
			}
			if resident(t, p) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never reached the page cache", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}
