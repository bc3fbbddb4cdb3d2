package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
)

// The metadata benchmarks at scale: a tree of a million entries (1,000
// directories of 1,000 files, plus the directories and the root) on tmpfs,
// scanned through the mount and on the tree itself with the tools jobs
// use, and the daemon's memory. Run with -benchtime=1x as root (the cold
// rounds drop the kernel's caches) and CACHEFS_NORACE=1 (the race
// detector's shadow memory would be counted as the daemon's); each takes
// minutes.

// scanTools are the scans of the brief: ls -lR, find printing sizes, an
// os.walk that stats every file, and a glob of one pattern over all
// directories.
var scanTools = []struct {
	name string
	argv func(root string) []string
}{
	{"ls-lR", func(r string) []string { return []string{"ls", "-lR", r} }},
	{"find", func(r string) []string { return []string{"find", r, "-printf", "%s\n"} }},
	{"os.walk+stat", func(r string) []string {
		return []string{"python3", "-c", "import os,sys\nfor d,ds,fs in os.walk(sys.argv[1]):\n for f in fs: os.stat(os.path.join(d,f))", r}
	}},
	{"glob", func(r string) []string {
		return []string{"python3", "-c", "import glob,os,sys\nglob.glob(os.path.join(sys.argv[1],'*','*7'))", r}
	}},
}

// runScan runs one scan to completion, its output discarded.
func runScan(tb testing.TB, argv []string) time.Duration {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%v: %v\n%.2000s", argv, err, stderr.String())
	}
	return time.Since(start)
}

func dropKernelCaches(tb testing.TB) {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		tb.Fatalf("cannot drop caches (needs root): %v", err)
	}
}

// daemonRSS is the daemon's resident memory in bytes.
func daemonRSS(tb testing.TB, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// makeWideTree writes dirs directories of files empty files each under
// root, in parallel, and returns the entries made, root included.
func makeWideTree(tb testing.TB, root string, dirs, files int) int {
	var wg sync.WaitGroup
	errs := make(chan error, dirs)
	work := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				dir := filepath.Join(root, fmt.Sprintf("d%04d", d))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					errs <- err
					continue
				}
				for f := 0; f < files; f++ {
					if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%06d", f)), nil, 0o644); err != nil {
						errs <- err
						break
					}
				}
			}
		}()
	}
	for d := 0; d < dirs; d++ {
		work <- d
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return 1 + dirs + dirs*files
}

// tmpfsDir is a directory on tmpfs removed when the benchmark ends; the
// issue's figures are against a tree on tmpfs.
func tmpfsDir(tb testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "cachefs-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// BenchmarkMillionEntries: the four scans through the mount and on the
// tree, cold (kernel caches dropped before each) then warm, and the
// daemon's RSS per entry after mount and after all the scans.
func BenchmarkMillionEntries(b *testing.B) {
	base := tmpfsDir(b)
	src := filepath.Join(base, "src")
	entries := makeWideTree(b, src, 1000, 1000)
	e := &env{t: b, tmp: b.TempDir()}
	mnt := filepath.Join(e.tmp, "mnt")
	start := time.Now()
	pid, _ := e.mount(src, mnt, "--cache-dir", filepath.Join(e.tmp, "cache"))
	b.ReportMetric(time.Since(start).Seconds(), "mount-s")
	defer e.unmount(mnt)
	b.ReportMetric(float64(daemonRSS(b, pid))/float64(entries), "rss-after-mount-B/entry")
	for i := 0; i < b.N; i++ {
		for _, tool := range scanTools {
			// Cold: each side scanned right after the kernel's caches
			// were dropped. Warm: each side again, at once, with the
			// mount's caches as its own cold scan left them.
			dropKernelCaches(b)
			l := runScan(b, tool.argv(src))
			dropKernelCaches(b)
			m := runScan(b, tool.argv(mnt))
			reportScan(b, tool.name+"-cold", m, l)
			m = runScan(b, tool.argv(mnt))
			l = runScan(b, tool.argv(src))
			reportScan(b, tool.name+"-warm", m, l)
		}
	}
	b.ReportMetric(float64(daemonRSS(b, pid))/float64(entries), "rss-after-scans-B/entry")
}

func reportScan(b *testing.B, name string, mount, local time.Duration) {
	b.ReportMetric(mount.Seconds(), name+"-mount-s")
	b.ReportMetric(local.Seconds(), name+"-local-s")
	b.ReportMetric(float64(mount)/float64(local), name+"-mount/local")
}

// BenchmarkTenMillionIndex: a synthetic index of ten million entries
// (10,000 directories of 1,000 files that exist only in the index: no
// metadata operation reaches the source) mounted with --index; the mount's
// time and the daemon's RSS after mount and after a find over the whole
// tree.
func BenchmarkTenMillionIndex(b *testing.B) {
	const dirs, files = 10_000, 1_000
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		b.Fatal(err)
	}
	idx := filepath.Join(e.tmp, "index")
	entries := writeWideIndex(b, src, idx, dirs, files)
	mnt := filepath.Join(e.tmp, "mnt")
	start := time.Now()
	pid, _ := e.mount(src, mnt, "--cache-dir", filepath.Join(e.tmp, "cache"), "--index", idx)
	b.ReportMetric(time.Since(start).Seconds(), "mount-s")
	defer e.unmount(mnt)
	b.ReportMetric(float64(daemonRSS(b, pid))/float64(entries), "rss-after-mount-B/entry")
	for i := 0; i < b.N; i++ {
		b.ReportMetric(runScan(b, []string{"find", mnt, "-printf", "%s\n"}).Seconds(), "find-s")
	}
	b.ReportMetric(float64(daemonRSS(b, pid))/float64(entries), "rss-after-find-B/entry")
}

// writeWideIndex writes an index of dirs directories of files files for
// the empty directory src, as `cachefs snapshot` would have made it from a
// full tree.
func writeWideIndex(tb testing.TB, src, path string, dirs, files int) int {
	var st syscall.Stat_t
	if err := syscall.Stat(src, &st); err != nil {
		tb.Fatal(err)
	}
	bld := snapshot.NewBuilder()
	ino := uint64(st.Ino) + 1
	next := func() uint64 { ino++; return ino }
	top := make([]snapshot.Entry, dirs)
	for d := range top {
		id := bld.NewDir()
		top[d] = snapshot.Entry{Name: fmt.Sprintf("d%05d", d), Dir: id,
			Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 2, Ino: next(), Mtime: st.Mtim.Nano()}}
		kids := make([]snapshot.Entry, files)
		for f := range kids {
			kids[f] = snapshot.Entry{Name: fmt.Sprintf("f%06d", f), Dir: snapshot.NoDir,
				Attr: snapshot.Attr{Mode: snapshot.ModeReg | 0o644, Nlink: 1, Ino: next(), Size: int64(f), Mtime: st.Mtim.Nano()}}
		}
		bld.SetDir(id, kids)
	}
	bld.SetDir(0, top)
	s, err := bld.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: uint32(2 + dirs), Ino: uint64(st.Ino),
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Uid: st.Uid, Gid: st.Gid})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := snapshot.WriteIndex(path, s, snapshot.IndexInfo{Source: src, Host: "bench", WalkStart: time.Now(), RootDev: uint64(st.Dev)}); err != nil {
		tb.Fatal(err)
	}
	return s.Len()
}
