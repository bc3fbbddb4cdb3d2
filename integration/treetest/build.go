// Package treetest builds source trees full of awkward shapes and compares
// two trees attribute by attribute, so that integration tests can check from
// the outside that a read-only cachefs mount mirrors its source exactly,
// without trusting anything the filesystem under test says about itself.
package treetest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Stats counts what BuildAwkward created below root, so callers can check
// that a mount exposes as many entries as the source holds.
type Stats struct {
	Entries  int64 // every entry below root, of any type
	Dirs     int64
	Files    int64 // regular files, counting each hard-link name
	Symlinks int64
	Bytes    int64 // sum of regular file sizes, per name: what reading every path costs
}

// Sizes and counts of the generated tree. BigFiles is large enough to push
// readdir past a single getdents buffer and expose paging bugs.
const (
	BigFiles    = 10000
	bigMaxSize  = 2048
	LargeSize   = 3<<20 + 17 // not a multiple of any page or block size
	ChainDepth  = 10
	ownerUID    = 1234
	ownerGID    = 5678
	maxNameSize = 255 // NAME_MAX on Linux
)

// pastTime is in 2001 and carries nanoseconds so that a filesystem that
// rounds timestamps to seconds or microseconds is caught.
var pastTime = time.Date(2001, time.September, 9, 1, 46, 40, 123456789, time.UTC)

type builder struct {
	t    testing.TB
	root string

	// Directory modes and times are applied only after everything else,
	// because creating entries inside a directory changes its mtime and a
	// read-only mode would stop later creations for non-root callers.
	dirModes []dirMode
	times    []timedPath
	nextTime int
}

type dirMode struct {
	rel  string
	mode uint32
}

type timedPath struct {
	rel string
	ts  time.Time
}

// BuildAwkward fills the existing, empty directory root with a tree meant to
// trip up a mirroring filesystem: odd names, deep nesting, a large directory,
// every file type, hard links, unusual permission bits and ownership, and
// nanosecond timestamps. Content is deterministic, so two calls produce
// trees that differ only in inode numbers, unpinned timestamps and the
// target of the one absolute symlink, which must name a path inside its own
// tree.
func BuildAwkward(t testing.TB, root string) Stats {
	t.Helper()
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatalf("treetest: %v", err)
	}
	names, err := readNames(abs)
	if err != nil {
		t.Fatalf("treetest: %v", err)
	}
	if len(names) != 0 {
		t.Fatalf("treetest: BuildAwkward needs an empty directory, %s holds %d entries", abs, len(names))
	}
	b := &builder{t: t, root: abs}
	b.build()
	st, err := countTree(abs)
	if err != nil {
		t.Fatalf("treetest: %v", err)
	}
	return st
}

func (b *builder) build() {
	isRoot := os.Geteuid() == 0

	// Odd names, each a regular file whose content names itself.
	b.mkdir("names", 0o755)
	for _, n := range awkwardNames() {
		b.file(filepath.Join("names", n), []byte("name: "+n+"\n"), 0o644)
	}
	// Odd names also as directories, since they travel a different code path
	// (lookup vs. readdir of a child).
	b.mkdir("names/dir with space", 0o755)
	b.file("names/dir with space/inner file", []byte("inner\n"), 0o644)
	b.mkdir("names/日本語ディレクトリ", 0o755)
	b.file("names/日本語ディレクトリ/données.txt", []byte("données\n"), 0o644)

	// A deep chain with a file at the bottom.
	rel := "chain"
	b.mkdir(rel, 0o755)
	for i := 1; i <= ChainDepth; i++ {
		rel = filepath.Join(rel, fmt.Sprintf("d%02d", i))
		b.mkdir(rel, 0o755)
		b.pinTime(rel)
	}
	b.file(filepath.Join(rel, "bottom.txt"), []byte("bottom of the chain\n"), 0o644)

	// Empty directories, one at the top and one as the leaf of a nest.
	b.mkdir("empty", 0o755)
	b.pinTime("empty")
	b.mkdir("nest", 0o755)
	b.mkdir("nest/inner", 0o755)
	b.mkdir("nest/inner/leaf", 0o755)

	// A large flat directory.
	b.mkdir("big", 0o755)
	for i := 0; i < BigFiles; i++ {
		p := filepath.Join("big", fmt.Sprintf("f%05d", i))
		b.file(p, bigContent(i), 0o644)
		if i%97 == 0 {
			b.pinTime(p)
		}
	}

	// Plain data: zero-byte files, modes, a large pseudo-random file.
	b.mkdir("data", 0o755)
	b.file("data/regular.txt", []byte("regular file\n"), 0o644)
	b.pinTime("data/regular.txt")
	b.file("data/zero", nil, 0o644)
	b.pinTime("data/zero")
	b.file("data/zero-readonly", nil, 0o444)
	b.file("data/mode0600", []byte("0600\n"), 0o600)
	b.file("data/mode0751", []byte("#!/bin/sh\nexit 0\n"), 0o751)
	b.file("data/mode0444", []byte("read only\n"), 0o444)
	b.pinTime("data/mode0444")
	b.file("data/large.bin", pseudoRandom(0x5eed, LargeSize), 0o644)
	b.pinTime("data/large.bin")

	// One file with three names in three directories.
	b.file("data/hard-a", []byte("one inode, three names\n"), 0o640)
	b.link("data/hard-a", "chain/d01/hard-b")
	b.mkdir("links", 0o755)
	b.link("data/hard-a", "links/hard-c")
	b.pinTime("data/hard-a")

	// Symlinks of every flavour. Their own timestamps are pinned too, since
	// a mirror has to report lstat times, not the target's.
	b.symlink("../data/regular.txt", "links/relative")
	b.symlink(filepath.Join(b.root, "data", "regular.txt"), "links/absolute")
	b.symlink("nowhere/at/all", "links/dangling")
	b.symlink("../chain", "links/dir-link")
	b.symlink("loop", "links/loop")
	b.symlink("../names/new\nline", "links/to newline")
	b.symlink("../"+strings.Repeat("../", 40)+"escape", "links/escape-upwards")
	for _, l := range []string{"links/relative", "links/absolute", "links/dangling", "links/dir-link"} {
		b.pinTime(l)
	}

	// Special files.
	b.mkdir("special", 0o755)
	if err := unix.Mkfifo(b.abs("special/fifo"), 0o644); err != nil {
		b.t.Fatalf("treetest: mkfifo: %v", err)
	}
	b.chmod("special/fifo", 0o644)
	b.pinTime("special/fifo")
	if isRoot {
		err := unix.Mknod(b.abs("special/null"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3)))
		switch {
		case err == nil:
			b.chmod("special/null", 0o644)
			b.pinTime("special/null")
		case errors.Is(err, unix.EPERM):
			// Containers often drop CAP_MKNOD even for root.
			b.t.Logf("treetest: no device node: %v", err)
		default:
			b.t.Fatalf("treetest: mknod: %v", err)
		}
	}

	// Permission bits beyond rwx, and foreign ownership.
	b.mkdir("perm", 0o755)
	b.mkdir("perm/private", 0o700)
	b.file("perm/private/secret", []byte("secret\n"), 0o600)
	b.mkdir("perm/setgid", 0o2755)
	b.file("perm/setgid/child", []byte("child of setgid dir\n"), 0o644)
	b.mkdir("perm/sticky", 0o1777)
	b.file("perm/setuid", []byte("#!/bin/sh\n"), 0o4755)
	b.file("perm/owned", []byte("owned by 1234:5678\n"), 0o640)
	b.symlink("owned", "perm/owned-link")
	if isRoot {
		// Chown clears set-id bits, so the mode is applied again after it.
		b.lchown("perm/owned", ownerUID, ownerGID)
		b.chmod("perm/owned", 0o640)
		b.lchown("perm/owned-link", ownerUID, ownerGID)
		b.lchown("perm/setgid", ownerUID, ownerGID)
	}
	b.pinTime("perm/owned")
	b.pinTime("perm/owned-link")

	// Times on non-directories do not disturb any directory, so they can be
	// set now. Directories go last, deepest first, so nothing after them
	// touches their mtime.
	var dirTimes []timedPath
	for _, tp := range b.times {
		fi, err := os.Lstat(b.abs(tp.rel))
		if err != nil {
			b.t.Fatalf("treetest: %v", err)
		}
		if fi.IsDir() {
			dirTimes = append(dirTimes, tp)
			continue
		}
		b.setTime(tp)
	}
	for i := len(b.dirModes) - 1; i >= 0; i-- {
		b.chmod(b.dirModes[i].rel, b.dirModes[i].mode)
	}
	for i := len(dirTimes) - 1; i >= 0; i-- {
		b.setTime(dirTimes[i])
	}
}

// awkwardNames returns names that stress escaping, encoding and length
// handling. Both NFC and NFD spellings of "café" are included because they
// are distinct names on Linux and a normalising layer would merge them.
func awkwardNames() []string {
	long := "long-" + strings.Repeat("é", (maxNameSize-len("long-"))/2)
	if len(long) != maxNameSize {
		panic("treetest: long name is not NAME_MAX bytes")
	}
	return []string{
		"with space",
		" leading space",
		"trailing space ",
		"données",
		"日本語",
		"emoji 🎉🦀",
		"café",       // NFC
		"cafe\u0301", // NFD
		"new\nline",
		"tab\there",
		long,
		"-leading-dash",
		"--",
		`back\slash "double" 'single'`,
		"glob*?[chars]",
		"$HOME;rm -rf",
		"...",
		".hidden",
		"percent%20encoded",
		"\u00a0nbsp",
	}
}

// bigContent gives every file in big/ its own content and a size spread
// over 0..2KiB; the index leads the content so no two non-empty files match.
func bigContent(i int) []byte {
	size := (i * 7919) % (bigMaxSize + 1)
	head := fmt.Sprintf("%d:", i)
	buf := pseudoRandom(uint64(i)+1, size)
	copy(buf, head)
	return buf
}

// pseudoRandom is a splitmix64 stream: deterministic across runs and Go
// versions, unlike math/rand's unseeded or versioned generators.
func pseudoRandom(seed uint64, n int) []byte {
	buf := make([]byte, n)
	x := seed
	for i := 0; i < n; i += 8 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		z ^= z >> 31
		for j := 0; j < 8 && i+j < n; j++ {
			buf[i+j] = byte(z >> (8 * j))
		}
	}
	return buf
}

func (b *builder) abs(rel string) string { return filepath.Join(b.root, rel) }

func (b *builder) mkdir(rel string, mode uint32) {
	b.t.Helper()
	if err := os.Mkdir(b.abs(rel), 0o755); err != nil {
		b.t.Fatalf("treetest: %v", err)
	}
	b.dirModes = append(b.dirModes, dirMode{rel, mode})
}

// file writes content first and only then sets the mode, so read-only and
// umask-restricted modes never get in the way of the write.
func (b *builder) file(rel string, content []byte, mode uint32) {
	b.t.Helper()
	if err := os.WriteFile(b.abs(rel), content, 0o600); err != nil {
		b.t.Fatalf("treetest: %v", err)
	}
	b.chmod(rel, mode)
}

func (b *builder) chmod(rel string, mode uint32) {
	b.t.Helper()
	// os.Chmod would translate through os.FileMode; the raw call keeps the
	// set-id and sticky bits exactly as written.
	if err := unix.Fchmodat(unix.AT_FDCWD, b.abs(rel), mode, 0); err != nil {
		b.t.Fatalf("treetest: chmod %q: %v", rel, err)
	}
}

func (b *builder) link(oldRel, newRel string) {
	b.t.Helper()
	if err := os.Link(b.abs(oldRel), b.abs(newRel)); err != nil {
		b.t.Fatalf("treetest: %v", err)
	}
}

func (b *builder) symlink(target, rel string) {
	b.t.Helper()
	if err := os.Symlink(target, b.abs(rel)); err != nil {
		b.t.Fatalf("treetest: %v", err)
	}
}

func (b *builder) lchown(rel string, uid, gid int) {
	b.t.Helper()
	if err := os.Lchown(b.abs(rel), uid, gid); err != nil {
		b.t.Fatalf("treetest: %v", err)
	}
}

// pinTime schedules a distinct past timestamp for rel; each one differs in
// both seconds and nanoseconds so swapped or truncated times show up.
func (b *builder) pinTime(rel string) {
	b.nextTime++
	ts := pastTime.Add(time.Duration(b.nextTime) * (time.Hour + time.Nanosecond))
	b.times = append(b.times, timedPath{rel, ts})
}

func (b *builder) setTime(tp timedPath) {
	b.t.Helper()
	atime := unix.NsecToTimespec(tp.ts.Add(time.Minute).UnixNano())
	mtime := unix.NsecToTimespec(tp.ts.UnixNano())
	err := unix.UtimesNanoAt(unix.AT_FDCWD, b.abs(tp.rel), []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		b.t.Fatalf("treetest: utimes %q: %v", tp.rel, err)
	}
}

func countTree(root string) (Stats, error) {
	var st Stats
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		st.Entries++
		switch d.Type() {
		case fs.ModeDir:
			st.Dirs++
		case fs.ModeSymlink:
			st.Symlinks++
		case 0:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			st.Files++
			st.Bytes += fi.Size()
		}
		return nil
	})
	return st, err
}

// readNames lists a directory without stat-ing its entries, so a broken
// entry on a mount surfaces in the per-entry comparison rather than here.
func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
