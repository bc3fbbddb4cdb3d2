package treetest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recorder stands in for a test so that reports CompareTrees makes about
// deliberately broken trees can be inspected instead of failing this test.
// Fatalf records without stopping the goroutine; CompareTrees returns on its
// own after calling it.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	fatals []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fatals = append(r.fatals, fmt.Sprintf(format, args...))
}

func (r *recorder) String() string {
	return strings.Join(append(append([]string{}, r.errors...), r.fatals...), "\n")
}

var allChecks = CompareOptions{CheckNlink: true, CheckInodes: true}

func compare(t *testing.T, want, got string, opts CompareOptions) *recorder {
	t.Helper()
	r := &recorder{TB: t}
	CompareTrees(r, want, got, opts)
	return r
}

func TestBuildAwkwardShapes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	st := BuildAwkward(t, root)
	t.Logf("stats: %+v", st)

	if st.Files < BigFiles || st.Dirs < ChainDepth || st.Symlinks < 4 {
		t.Errorf("stats too small: %+v", st)
	}
	if st.Entries <= st.Dirs+st.Files+st.Symlinks {
		t.Errorf("stats count no special files: %+v", st)
	}
	if st.Bytes < LargeSize {
		t.Errorf("stats bytes %d, want at least %d", st.Bytes, LargeSize)
	}

	lstat := func(rel string) unix.Stat_t {
		t.Helper()
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, rel), &s); err != nil {
			t.Fatalf("lstat %q: %v", rel, err)
		}
		return s
	}
	for rel, want := range map[string]uint32{
		"data/mode0600":   unix.S_IFREG | 0o600,
		"data/mode0751":   unix.S_IFREG | 0o751,
		"data/mode0444":   unix.S_IFREG | 0o444,
		"perm/private":    unix.S_IFDIR | 0o700,
		"perm/setgid":     unix.S_IFDIR | 0o2755,
		"perm/sticky":     unix.S_IFDIR | 0o1777,
		"perm/setuid":     unix.S_IFREG | 0o4755,
		"special/fifo":    unix.S_IFIFO | 0o644,
		"links/dir-link":  unix.S_IFLNK | 0o777,
		"chain/d01/d02":   unix.S_IFDIR | 0o755,
		"nest/inner/leaf": unix.S_IFDIR | 0o755,
	} {
		if got := lstat(rel).Mode; got != want {
			t.Errorf("%q: mode %#o, want %#o", rel, got, want)
		}
	}
	if s := lstat("data/large.bin"); s.Size != LargeSize {
		t.Errorf("large file size %d, want %d", s.Size, LargeSize)
	}
	if s := lstat("data/hard-a"); s.Nlink != 3 {
		t.Errorf("hard link count %d, want 3", s.Nlink)
	}
	for _, rel := range []string{"data/regular.txt", "links/dangling", "chain/d01", "chain/d01/d02/d03/d04/d05/d06/d07/d08/d09/d10", "empty"} {
		m := lstat(rel).Mtim
		if time.Unix(m.Sec, m.Nsec).UTC().Year() != 2001 || m.Nsec == 0 {
			t.Errorf("%q: mtime %d.%09d not pinned to 2001 with nanoseconds", rel, m.Sec, m.Nsec)
		}
	}
	long := 0
	names, err := os.ReadDir(filepath.Join(root, "names"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if len(n.Name()) == maxNameSize {
			long++
		}
	}
	if long != 1 {
		t.Errorf("%d names of %d bytes, want 1", long, maxNameSize)
	}
	if os.Geteuid() == 0 {
		if s := lstat("perm/owned"); s.Uid != ownerUID || s.Gid != ownerGID || s.Mode&0o7777 != 0o640 {
			t.Errorf("owned file: %d:%d mode %#o", s.Uid, s.Gid, s.Mode&0o7777)
		}
		var s unix.Stat_t
		if unix.Lstat(filepath.Join(root, "special/null"), &s) == nil && s.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device rdev %#x, want 1:3", s.Rdev)
		}
	}

	// The same tree compared with itself must be clean, and hashing must be
	// stable.
	if r := compare(t, root, root, allChecks); len(r.errors)+len(r.fatals) > 0 {
		t.Errorf("tree differs from itself:\n%s", r)
	}
	if h1, h2 := HashTree(t, root), HashTree(t, root); h1 != h2 {
		t.Errorf("HashTree not stable: %s vs %s", h1, h2)
	}
}

func TestBuildAwkwardRejectsNonEmpty(t *testing.T) {
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != errStop {
				panic(v)
			}
		}()
		BuildAwkward(&stopper{r}, root)
	}()
	if len(r.fatals) != 1 {
		t.Errorf("BuildAwkward into a non-empty directory: %d fatal reports, want 1", len(r.fatals))
	}
}

var errStop = fmt.Errorf("stopped by Fatalf")

// stopper ends BuildAwkward at its first Fatalf, as a real test would,
// instead of letting it build on top of the unexpected entry.
type stopper struct{ *recorder }

func (s *stopper) Fatalf(format string, args ...any) {
	s.recorder.Fatalf(format, args...)
	panic(errStop)
}

// pair builds a reference tree once and, per call, an independent second
// tree made equal to it in every compared attribute: only the absolute
// symlink target and unpinned timestamps differ between builds.
type pair struct {
	want string
}

func newPair(t *testing.T) *pair {
	p := &pair{want: t.TempDir()}
	BuildAwkward(t, p.want)
	return p
}

func (p *pair) fresh(t *testing.T) string {
	t.Helper()
	got := t.TempDir()
	BuildAwkward(t, got)
	target, err := os.Readlink(filepath.Join(p.want, "links/absolute"))
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(got, "links/absolute")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	p.syncTimes(t, got)
	return got
}

// syncTimes copies every timestamp from want to got, so each mutation
// below shows up as just the difference it is meant to cause.
func (p *pair) syncTimes(t *testing.T, got string) {
	t.Helper()
	err := filepath.WalkDir(p.want, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.want, path)
		var s unix.Stat_t
		if err := unix.Lstat(path, &s); err != nil {
			return err
		}
		dst := filepath.Join(got, rel)
		if _, err := os.Lstat(dst); os.IsNotExist(err) {
			return nil
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, dst, []unix.Timespec{s.Atim, s.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// mutation breaks one thing in a fresh copy. Unless keepTimes is set,
// timestamps are copied back afterwards so that incidental mtime changes
// (a parent directory gaining an entry, say) do not add reports.
type mutation struct {
	name      string
	opts      CompareOptions
	mutate    func(t *testing.T, got string)
	keepTimes bool
	want      []string // each must appear in exactly one report, and nothing else may be reported
	hashes    bool     // whether HashTree should notice
}

func TestCompareTreesDetects(t *testing.T) {
	t.Parallel()
	p := newPair(t)

	t.Run("identical", func(t *testing.T) {
		t.Parallel()
		got := p.fresh(t)
		if r := compare(t, p.want, got, allChecks); len(r.errors)+len(r.fatals) > 0 {
			t.Fatalf("independent builds differ:\n%s", r)
		}
		if HashTree(t, p.want) != HashTree(t, got) {
			t.Errorf("HashTree differs between identical builds")
		}
	})

	cases := []mutation{
		{
			name: "content byte",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				f, err := os.OpenFile(filepath.Join(got, "data/large.bin"), os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if _, err := f.WriteAt([]byte{'!'}, LargeSize-1); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"data/large.bin": content differs`},
			hashes: true,
		},
		{
			name: "content in big dir",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				path := filepath.Join(got, "big/f09999")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 1
				if err := os.WriteFile(path, b, 0); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"big/f09999": content differs`},
			hashes: true,
		},
		{
			name: "mode",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				if err := unix.Chmod(filepath.Join(got, "perm/setgid"), 0o755); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"perm/setgid": permissions 0755, want 02755`},
			hashes: true,
		},
		{
			name: "symlink target",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				link := filepath.Join(got, "links/relative")
				if err := os.Remove(link); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink("../data/regular.txX", link); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"links/relative": symlink target "../data/regular.txX", want "../data/regular.txt"`},
			hashes: true,
		},
		{
			name: "removed file",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				if err := os.Remove(filepath.Join(got, "names", "new\nline")); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"names/new\nline": missing`},
			hashes: true,
		},
		{
			name: "extra file",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				if err := os.WriteFile(filepath.Join(got, "empty", "intruder"), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"empty/intruder": unexpected entry`},
			hashes: true,
		},
		{
			name: "mtime nanosecond",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				path := filepath.Join(got, "links/dangling")
				var s unix.Stat_t
				if err := unix.Lstat(path, &s); err != nil {
					t.Fatal(err)
				}
				s.Mtim.Nsec++
				if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, []unix.Timespec{s.Atim, s.Mtim}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
					t.Fatal(err)
				}
			},
			keepTimes: true,
			want:      []string{`"links/dangling": mtime`},
		},
		{
			name: "type",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				path := filepath.Join(got, "special/fifo")
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			},
			want:   []string{`"special/fifo": type regular file, want fifo`},
			hashes: true,
		},
		{
			name: "hard link broken",
			opts: CompareOptions{CheckInodes: true},
			mutate: func(t *testing.T, got string) {
				path := filepath.Join(got, "links/hard-c")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
				if err := unix.Chmod(path, 0o640); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				`"chain/d01/hard-b": shares an inode with ["data/hard-a"], want ["data/hard-a" "links/hard-c"]`,
				`"links/hard-c": shares an inode with [], want ["chain/d01/hard-b" "data/hard-a"]`,
			},
		},
		{
			name: "nlink",
			opts: CompareOptions{CheckNlink: true},
			mutate: func(t *testing.T, got string) {
				if err := os.Remove(filepath.Join(got, "links/hard-c")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{
				`"links/hard-c": missing`,
				`"chain/d01/hard-b": nlink 2, want 3`,
				`"data/hard-a": nlink 2, want 3`,
			},
			hashes: true,
		},
	}
	var null unix.Stat_t
	if unix.Lstat(filepath.Join(p.want, "special/null"), &null) == nil {
		cases = append(cases, mutation{
			name: "rdev",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				path := filepath.Join(got, "special/null")
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mknod(path, unix.S_IFCHR|0o644, int(unix.Mkdev(1, 5))); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`"special/null": rdev 1:5, want 1:3`},
		})
	}
	if os.Geteuid() == 0 {
		cases = append(cases, mutation{
			name: "owner",
			opts: allChecks,
			mutate: func(t *testing.T, got string) {
				if err := os.Lchown(filepath.Join(got, "perm/owned-link"), 0, ownerGID); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{`"perm/owned-link": owner 0:5678, want 1234:5678`},
		})
	}

	wantHash := HashTree(t, p.want)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := p.fresh(t)
			tc.mutate(t, got)
			if !tc.keepTimes {
				p.syncTimes(t, got)
			}
			r := compare(t, p.want, got, tc.opts)
			if len(r.fatals) > 0 || len(r.errors) != len(tc.want) {
				t.Errorf("got %d reports, want %d:\n%s", len(r.errors)+len(r.fatals), len(tc.want), r)
			}
			for _, w := range tc.want {
				n := 0
				for _, e := range r.errors {
					if strings.Contains(e, w) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("%d reports contain %s, want 1:\n%s", n, w, r)
				}
			}
			if same := wantHash == HashTree(t, got); same == tc.hashes {
				t.Errorf("HashTree equal = %v after mutation, want %v", same, !tc.hashes)
			}
		})
	}
}

func TestCompareTreesSkipContent(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	got := p.fresh(t)
	path := filepath.Join(got, "data/regular.txt")
	if err := os.WriteFile(path, []byte("REGULAR FILE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p.syncTimes(t, got)
	if r := compare(t, p.want, got, CompareOptions{SkipContent: true}); len(r.errors)+len(r.fatals) > 0 {
		t.Errorf("SkipContent still compared content:\n%s", r)
	}
	if r := compare(t, p.want, got, CompareOptions{}); len(r.errors) != 1 {
		t.Errorf("content change not reported once:\n%s", r)
	}
}

func TestCompareTreesGivesUp(t *testing.T) {
	t.Parallel()
	want := t.TempDir()
	BuildAwkward(t, want)
	got := t.TempDir()
	// An empty big/ gets the walk into the 10,000 missing names.
	if err := os.Mkdir(filepath.Join(got, "big"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := compare(t, want, got, allChecks)
	if len(r.errors) != maxDiffs || len(r.fatals) != 1 {
		t.Fatalf("got %d errors and %d fatals, want %d and 1:\n%s", len(r.errors), len(r.fatals), maxDiffs, r)
	}
	if !strings.Contains(r.fatals[0], "too many differences") {
		t.Errorf("fatal report %q does not say why", r.fatals[0])
	}
}

func TestCompareTreesRootOnly(t *testing.T) {
	want, got := t.TempDir(), t.TempDir()
	if err := os.Chmod(want, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(got, 0o700); err != nil {
		t.Fatal(err)
	}
	// Root mtimes differ between any two directories; only mode counts.
	r := compare(t, want, got, allChecks)
	if len(r.errors) != 1 || !strings.Contains(r.errors[0], "root: mode directory 0700, want directory 0755") {
		t.Errorf("unexpected reports:\n%s", r)
	}
}

func TestHashTreeIgnoresTimes(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	BuildAwkward(t, root)
	before := HashTree(t, root)
	ts := []unix.Timespec{{Sec: 1}, {Sec: 2}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "data/zero"), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		t.Fatal(err)
	}
	if after := HashTree(t, root); after != before {
		t.Errorf("HashTree changed with an mtime: %s -> %s", before, after)
	}
}
