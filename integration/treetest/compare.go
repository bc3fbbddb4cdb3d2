package treetest

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// CompareOptions turns on checks that a mirroring filesystem may legitimately
// fail, so each test can state which guarantees it expects.
type CompareOptions struct {
	// CheckNlink compares link counts. FUSE filesystems often report 1 for
	// directories, so this is not on by default.
	CheckNlink bool
	// CheckInodes requires that paths sharing an inode on one side share
	// one on the other, and no others do.
	CheckInodes bool
	// SkipContent compares metadata only, for tests that must not pull file
	// data through the mount.
	SkipContent bool
}

// maxDiffs bounds the report: past this, one broken mount would otherwise
// print thousands of lines for big/ alone.
const maxDiffs = 20

// hashWorkers bounds parallel reads; enough to hide per-file latency through
// FUSE without flooding the daemon under test.
const hashWorkers = 8

type comparer struct {
	t         testing.TB
	want, got string
	opts      CompareOptions

	ndiffs  int
	stopped bool

	contents []string            // rel paths of regular files to hash on both sides
	wantIno  map[fileID][]string // inode -> rel paths, only paths present on both sides
	gotIno   map[fileID][]string
}

type fileID struct{ dev, ino uint64 }

// CompareTrees reports through t.Errorf every way in which got differs from
// want, without following symlinks on either side. After maxDiffs
// differences it calls t.Fatalf once and returns, so it never reports from
// any goroutine but the caller's.
func CompareTrees(t testing.TB, want, got string, opts CompareOptions) {
	t.Helper()
	c := &comparer{
		t:       t,
		want:    want,
		got:     got,
		opts:    opts,
		wantIno: map[fileID][]string{},
		gotIno:  map[fileID][]string{},
	}
	c.compareRoot()
	if c.stopped {
		return
	}
	c.walk("")
	if c.stopped {
		return
	}
	if !opts.SkipContent {
		c.compareContents()
	}
	if c.stopped {
		return
	}
	if opts.CheckInodes {
		c.compareLinkGroups()
	}
}

func (c *comparer) errorf(format string, args ...any) {
	c.t.Helper()
	if c.stopped {
		return
	}
	c.ndiffs++
	if c.ndiffs > maxDiffs {
		c.stopped = true
		c.t.Fatalf("too many differences between %s and %s (more than %d), giving up", c.want, c.got, maxDiffs)
		return
	}
	c.t.Errorf(format, args...)
}

func (c *comparer) compareRoot() {
	c.t.Helper()
	var ws, gs unix.Stat_t
	if err := unix.Lstat(c.want, &ws); err != nil {
		c.errorf("want root: %v", &os.PathError{Op: "lstat", Path: c.want, Err: err})
		c.stopped = true
		return
	}
	if err := unix.Lstat(c.got, &gs); err != nil {
		c.errorf("got root: %v", &os.PathError{Op: "lstat", Path: c.got, Err: err})
		c.stopped = true
		return
	}
	if ws.Mode != gs.Mode {
		c.errorf("root: mode %s, want %s", modeString(gs.Mode), modeString(ws.Mode))
	}
	if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
		c.errorf("root: owner %d:%d, want %d:%d", gs.Uid, gs.Gid, ws.Uid, ws.Gid)
	}
	if ws.Mode&unix.S_IFMT != unix.S_IFDIR || gs.Mode&unix.S_IFMT != unix.S_IFDIR {
		c.stopped = true
	}
}

// walk compares the directory rel on both sides, then recurses. Names are
// listed without stat so that entries readdir shows but lookup cannot find
// (or the reverse) are reported as such.
func (c *comparer) walk(rel string) {
	c.t.Helper()
	wnames, err := readNames(filepath.Join(c.want, rel))
	if err != nil {
		c.errorf("%s: reading want: %v", show(rel), err)
		return
	}
	gnames, err := readNames(filepath.Join(c.got, rel))
	if err != nil {
		c.errorf("%s: reading got: %v", show(rel), err)
		return
	}
	slices.Sort(wnames)
	slices.Sort(gnames)
	if d := duplicates(gnames); len(d) > 0 {
		c.errorf("%s: readdir lists names more than once: %q", show(rel), d)
	}

	var both []string
	i, j := 0, 0
	for (i < len(wnames) || j < len(gnames)) && !c.stopped {
		switch {
		case j == len(gnames) || (i < len(wnames) && wnames[i] < gnames[j]):
			c.errorf("%s: missing", show(filepath.Join(rel, wnames[i])))
			i++
		case i == len(wnames) || gnames[j] < wnames[i]:
			c.errorf("%s: unexpected entry", show(filepath.Join(rel, gnames[j])))
			j++
		default:
			both = append(both, wnames[i])
			i++
			j++
		}
	}
	for _, name := range both {
		if c.stopped {
			return
		}
		c.compareEntry(filepath.Join(rel, name))
	}
}

func (c *comparer) compareEntry(rel string) {
	c.t.Helper()
	wp, gp := filepath.Join(c.want, rel), filepath.Join(c.got, rel)
	var ws, gs unix.Stat_t
	if err := unix.Lstat(wp, &ws); err != nil {
		c.errorf("%s: lstat want: %v", show(rel), err)
		return
	}
	if err := unix.Lstat(gp, &gs); err != nil {
		c.errorf("%s: lstat got: %v", show(rel), err)
		return
	}
	wtype, gtype := ws.Mode&unix.S_IFMT, gs.Mode&unix.S_IFMT
	if wtype != gtype {
		c.errorf("%s: type %s, want %s", show(rel), typeName(gtype), typeName(wtype))
		return
	}
	if wperm, gperm := ws.Mode&0o7777, gs.Mode&0o7777; wperm != gperm {
		c.errorf("%s: permissions %#o, want %#o", show(rel), gperm, wperm)
	}
	if ws.Uid != gs.Uid || ws.Gid != gs.Gid {
		c.errorf("%s: owner %d:%d, want %d:%d", show(rel), gs.Uid, gs.Gid, ws.Uid, ws.Gid)
	}
	if (wtype == unix.S_IFREG || wtype == unix.S_IFLNK) && ws.Size != gs.Size {
		c.errorf("%s: size %d, want %d", show(rel), gs.Size, ws.Size)
	}
	if ws.Mtim != gs.Mtim {
		c.errorf("%s: mtime %d.%09d, want %d.%09d", show(rel), gs.Mtim.Sec, gs.Mtim.Nsec, ws.Mtim.Sec, ws.Mtim.Nsec)
	}
	if c.opts.CheckNlink && ws.Nlink != gs.Nlink {
		c.errorf("%s: nlink %d, want %d", show(rel), gs.Nlink, ws.Nlink)
	}
	if (wtype == unix.S_IFCHR || wtype == unix.S_IFBLK) && ws.Rdev != gs.Rdev {
		c.errorf("%s: rdev %d:%d, want %d:%d", show(rel),
			unix.Major(gs.Rdev), unix.Minor(gs.Rdev), unix.Major(ws.Rdev), unix.Minor(ws.Rdev))
	}
	if wtype != unix.S_IFDIR && c.opts.CheckInodes {
		wid := fileID{uint64(ws.Dev), ws.Ino}
		gid := fileID{uint64(gs.Dev), gs.Ino}
		c.wantIno[wid] = append(c.wantIno[wid], rel)
		c.gotIno[gid] = append(c.gotIno[gid], rel)
	}

	switch wtype {
	case unix.S_IFDIR:
		c.walk(rel)
	case unix.S_IFLNK:
		wt, err := os.Readlink(wp)
		if err != nil {
			c.errorf("%s: readlink want: %v", show(rel), err)
			return
		}
		gt, err := os.Readlink(gp)
		if err != nil {
			c.errorf("%s: readlink got: %v", show(rel), err)
			return
		}
		if wt != gt {
			c.errorf("%s: symlink target %q, want %q", show(rel), gt, wt)
		}
	case unix.S_IFREG:
		// A size mismatch is already reported; hashing would only repeat it.
		if ws.Size == gs.Size {
			c.contents = append(c.contents, rel)
		}
	}
}

// compareContents hashes after the walk rather than during it, so no worker
// goroutine is alive when a report might end the test.
func (c *comparer) compareContents() {
	c.t.Helper()
	type result struct {
		w, g       [sha256.Size]byte
		werr, gerr error
	}
	results := make([]result, len(c.contents))
	parallel(len(c.contents), func(i int) {
		r := &results[i]
		r.w, r.werr = hashFile(filepath.Join(c.want, c.contents[i]))
		r.g, r.gerr = hashFile(filepath.Join(c.got, c.contents[i]))
	})
	for i, r := range results {
		rel := c.contents[i]
		switch {
		case r.werr != nil:
			c.errorf("%s: reading want: %v", show(rel), r.werr)
		case r.gerr != nil:
			c.errorf("%s: reading got: %v", show(rel), r.gerr)
		case r.w != r.g:
			c.errorf("%s: content differs (sha256 %x, want %x)", show(rel), r.g[:8], r.w[:8])
		}
		if c.stopped {
			return
		}
	}
}

// compareLinkGroups checks hard-link structure by path, since inode numbers
// themselves are free to differ between a source and its mirror.
func (c *comparer) compareLinkGroups() {
	c.t.Helper()
	wantGroup := groupsByPath(c.wantIno)
	gotGroup := groupsByPath(c.gotIno)
	reported := map[string]bool{}
	check := func(groups map[string][]string) {
		for _, rel := range sortedKeys(groups) {
			if len(groups[rel]) < 2 {
				continue
			}
			w, g := wantGroup[rel], gotGroup[rel]
			if slices.Equal(w, g) {
				continue
			}
			key := strings.Join(w, "\x00") + "\x01" + strings.Join(g, "\x00")
			if reported[key] {
				continue
			}
			reported[key] = true
			c.errorf("%s: shares an inode with %q, want %q", show(rel), others(g, rel), others(w, rel))
			if c.stopped {
				return
			}
		}
	}
	check(wantGroup)
	if !c.stopped {
		check(gotGroup)
	}
}

// groupsByPath maps each path to the sorted list of paths sharing its inode.
func groupsByPath(byIno map[fileID][]string) map[string][]string {
	out := map[string][]string{}
	for _, paths := range byIno {
		g := slices.Sorted(slices.Values(paths))
		for _, p := range g {
			out[p] = g
		}
	}
	return out
}

func others(group []string, rel string) []string {
	var out []string
	for _, p := range group {
		if p != rel {
			out = append(out, p)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func duplicates(sorted []string) []string {
	var d []string
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] && (len(d) == 0 || d[len(d)-1] != sorted[i]) {
			d = append(d, sorted[i])
		}
	}
	return d
}

// parallel runs fn(0..n-1) on a bounded pool. Each call writes only its own
// slot, so callers need no locking.
func parallel(n int, fn func(i int)) {
	workers := min(hashWorkers, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	// O_NOFOLLOW guards against the entry turning into a symlink between the
	// lstat and the open, which would silently compare the wrong file.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, err
	}
	h.Sum(sum[:0])
	return sum, nil
}

// show quotes paths because the awkward tree has names with newlines and
// spaces that would otherwise make reports ambiguous.
func show(rel string) string {
	if rel == "" {
		return "."
	}
	return fmt.Sprintf("%q", rel)
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", t)
}

func modeString(m uint32) string {
	return fmt.Sprintf("%s %#o", typeName(m&unix.S_IFMT), m&0o7777)
}
