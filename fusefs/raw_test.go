package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// requestLog collects go-fuse's debug lines, one per request and reply.
type requestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *requestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count returns how many requests of opcode op reached the daemon.
func (l *requestLog) count(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), ": "+op+" ")
}

// mountLogged serves s with go-fuse's request log until the test ends.
func mountLogged(t *testing.T, s *snapshot.Snapshot) (string, *requestLog) {
	t.Helper()
	rl := &requestLog{}
	mnt := mountConfig(t, Config{Snapshot: s, Content: pathContent{s}, Logger: zerolog.Nop(),
		Debug: true, GoFuseLog: log.New(rl, "", 0)})
	return mnt, rl
}

// wideTree is one directory d of n files, plus whatever extra entries the
// caller adds to the root.
func wideTree(t testing.TB, n int, acl func(b *snapshot.Builder) uint32) *snapshot.Snapshot {
	t.Helper()
	b := snapshot.NewBuilder()
	d := b.NewDir()
	var v uint32
	if acl != nil {
		b.SetACLsRecorded()
		v = acl(b)
	}
	root := []snapshot.Entry{{Name: "d", Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 2, Ino: 2}, Dir: d}}
	f := fileEntry("withacl", 3, 0o644, len("contents of withacl"))
	f.ACL = v
	root = append(root, f)
	b.SetDir(0, root)
	kids := make([]snapshot.Entry, n)
	for i := range kids {
		kids[i] = fileEntry(fmt.Sprintf("f%06d", i), uint64(10+i), 0o644, 1)
	}
	b.SetDir(d, kids)
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 3, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestNoXattrRoundTripsWithoutACLs: over a snapshot that holds no extended
// attribute, what ls -l asks of every file reaches the daemon once for the
// whole mount, and the answer is "none".
func TestNoXattrRoundTripsWithoutACLs(t *testing.T) {
	mnt, rl := mountLogged(t, wideTree(t, 200, nil))
	for i := 0; i < 200; i++ {
		p := filepath.Join(mnt, "d", fmt.Sprintf("f%06d", i))
		for _, name := range []string{"security.selinux", snapshot.XattrACLAccess} {
			// The kernel answers ACL names itself (ENODATA), others
			// with EOPNOTSUPP.
			_, err := unix.Lgetxattr(p, name, make([]byte, 256))
			if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENODATA) {
				t.Fatalf("lgetxattr %s %s: %v, want EOPNOTSUPP or ENODATA", p, name, err)
			}
		}
		if _, err := unix.Llistxattr(p, make([]byte, 256)); !errors.Is(err, unix.EOPNOTSUPP) {
			t.Fatalf("llistxattr %s: %v, want EOPNOTSUPP", p, err)
		}
	}
	if n := rl.count("GETXATTR"); n > 1 {
		t.Errorf("%d GETXATTR requests reached the daemon for 200 files, want at most 1", n)
	}
	if n := rl.count("LISTXATTR"); n > 1 {
		t.Errorf("%d LISTXATTR requests reached the daemon for 200 files, want at most 1", n)
	}
}

// TestXattrsFromMemoryWithACLs: a snapshot with ACLs keeps answering
// GETXATTR, from memory: the ACL where there is one, ENODATA elsewhere.
func TestXattrsFromMemoryWithACLs(t *testing.T) {
	acl := snapshot.ACL{Access: posixACL(t)}
	mnt, _ := mountLogged(t, wideTree(t, 3, func(b *snapshot.Builder) uint32 { return b.InternACL(acl) }))
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(filepath.Join(mnt, "withacl"), snapshot.XattrACLAccess, buf)
	if err != nil || !bytes.Equal(buf[:n], acl.Access) {
		t.Errorf("ACL of withacl: %x, %v; want %x", buf[:n], err, acl.Access)
	}
	if _, err := unix.Lgetxattr(filepath.Join(mnt, "d", "f000000"), "user.x", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("user.x of a file without it: %v, want ENODATA", err)
	}
}

// posixACL is user::rw- user:1234:r-- group::r-- mask::r-- other::r-- in the
// kernel's xattr form.
func posixACL(t *testing.T) []byte {
	t.Helper()
	ent := func(tag uint16, perm uint16, id uint32) []byte {
		return []byte{byte(tag), byte(tag >> 8), byte(perm), byte(perm >> 8), byte(id), byte(id >> 8), byte(id >> 16), byte(id >> 24)}
	}
	v := []byte{2, 0, 0, 0}
	v = append(v, ent(0x01, 6, ^uint32(0))...)
	v = append(v, ent(0x02, 4, 1234)...)
	v = append(v, ent(0x04, 4, ^uint32(0))...)
	v = append(v, ent(0x10, 4, ^uint32(0))...)
	v = append(v, ent(0x20, 4, ^uint32(0))...)
	return v
}

// TestListingAnswersStats: a listing carries every child's attributes
// (READDIRPLUS), so stats after it send no LOOKUP per entry.
func TestListingAnswersStats(t *testing.T) {
	mnt, rl := mountLogged(t, wideTree(t, 500, nil))
	des, err := os.ReadDir(filepath.Join(mnt, "d"))
	if err != nil || len(des) != 500 {
		t.Fatalf("readdir: %d entries, %v", len(des), err)
	}
	before := rl.count("LOOKUP")
	for _, de := range des {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(mnt, "d", de.Name()), &st); err != nil {
			t.Fatal(err)
		}
	}
	if n := rl.count("LOOKUP") - before; n > 0 {
		t.Errorf("%d LOOKUPs for stats after a listing of 500 files, want none", n)
	}
}

// TestLookedUpEntriesCostNoHeap: entries the kernel has looked up cost the
// daemon no Go objects, whatever the kernel keeps.
func TestLookedUpEntriesCostNoHeap(t *testing.T) {
	const n = 20_000
	s := wideTree(t, n, nil)
	mnt := mountSnapshot(t, s)
	heap := func() uint64 {
		// Twice: sync.Pool keeps what it held until the second collection.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	for i := 0; i < n; i++ {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(mnt, "d", fmt.Sprintf("f%06d", i)), &st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.ReadDir(filepath.Join(mnt, "d")); err != nil {
		t.Fatal(err)
	}
	// go-fuse's request buffers (1 MiB each) may stay allocated; entries
	// must not add to them (a node object per entry was about 450 bytes).
	const buffers = 4 << 20
	grew := int64(heap()) - int64(before)
	if grew > buffers+16*n {
		t.Errorf("the heap grew %d bytes (%.0f per entry) for %d looked-up entries, want no per-entry objects", grew, float64(grew)/n, n)
	}
}

// TestListingRoundTrips: listing directories costs no OPENDIR or
// RELEASEDIR after the first, and a directory of 1,500 entries read with a
// buffer of its st_blksize (as glibc's readdir does) comes in one
// READDIRPLUS plus the empty one that ends it.
func TestListingRoundTrips(t *testing.T) {
	mnt, rl := mountLogged(t, wideTree(t, 1500, nil))
	dirs := []string{mnt, filepath.Join(mnt, "d")}
	for _, dir := range dirs {
		if n := getdentsAll(t, dir); n == 0 {
			t.Fatalf("%s: no entries", dir)
		}
	}
	// Root: entries, end; d: entries, end. Counted after the first
	// listings only: another process dropping the kernel's caches would
	// make later listings ask again.
	if n := rl.count("READDIRPLUS"); n > 4 {
		t.Errorf("%d READDIRPLUS to list 2 directories (1,500 and 2 entries), want 4", n)
	}
	for _, dir := range dirs {
		getdentsAll(t, dir)
	}
	if n := rl.count("OPENDIR"); n > 1 {
		t.Errorf("%d OPENDIR for 4 opens of 2 directories, want at most 1", n)
	}
	if n := rl.count("RELEASEDIR"); n > 0 {
		t.Errorf("%d RELEASEDIR, want none", n)
	}
}

// getdentsAll lists dir to its end with a getdents buffer of the
// directory's st_blksize and returns the entries read.
func getdentsAll(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, st.Blksize)
	total := 0
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		_, cnt, _ := unix.ParseDirent(buf[:n], -1, nil)
		total += cnt
	}
}

// TestOnListHearsUncachedListings: the prefetcher still hears of a
// directory being listed when no OPENDIR reaches the daemon.
func TestOnListHearsUncachedListings(t *testing.T) {
	s := wideTree(t, 10, nil)
	heard := make(chan uint32, 16)
	mnt := mountConfig(t, Config{Snapshot: s, Content: pathContent{s}, Logger: zerolog.Nop(),
		OnList: func(idx uint32) { heard <- idx }})
	getdentsAll(t, filepath.Join(mnt, "d"))
	d, _ := s.Lookup(0, "d")
	select {
	case got := <-heard:
		if got != d {
			t.Errorf("OnList heard entry %d, want d (%d)", got, d)
		}
	default:
		t.Error("OnList heard nothing of a listing")
	}
}
