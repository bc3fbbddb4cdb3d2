package integration

// What README.md, docs/operations.md and `cachefs --help` promise, each
// checked through the mountpoint and the command line as a user sees it.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"github.com/cachefs/cachefs/mounttable"
	"golang.org/x/sys/unix"
)

func TestHelpListsEveryExitStatus(t *testing.T) {
	e := newEnv(t)
	r := e.run("--help")
	if r.code != 0 {
		t.Fatalf("--help: exit %d: %s", r.code, r.stderr)
	}
	_, section, ok := strings.Cut(r.stdout, "EXIT STATUS\n")
	if !ok {
		t.Fatalf("--help has no EXIT STATUS section:\n%s", r.stdout)
	}
	for _, code := range []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 130} {
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^  %d +\S`, code)).MatchString(section) {
			t.Errorf("EXIT STATUS does not list %d:\n%s", code, section)
		}
	}
}

// TestForegroundServesUntilSignalled: --foreground serves from the
// command itself, and SIGTERM to it unmounts and exits 0.
func TestForegroundServesUntilSignalled(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	mnt := filepath.Join(e.tmp, "mnt")
	args := []string{"mount", src, mnt, "--foreground"}
	e.forgetMountsOf(args)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := e.command(ctx, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waitFor(t, "the foreground mount to serve", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("--foreground exited before serving: %v\n%s", err, errb.String())
		default:
		}
		return isMounted(mnt)
	})
	if b, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(b) != "contents" {
		t.Fatalf("read through the foreground mount: %q %v\n%s", b, err, errb.String())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCodeOf(t, <-exited); code != 0 || isMounted(mnt) {
		t.Errorf("--foreground after SIGTERM: exit %d, mounted %v\n%s", code, isMounted(mnt), errb.String())
	}
}

// statusKeys lists every key of a status --json object, nested ones as
// "outer.inner".
func statusKeys(m map[string]any, prefix string, out *[]string) {
	for k, v := range m {
		*out = append(*out, prefix+k)
		if mm, ok := v.(map[string]any); ok {
			statusKeys(mm, prefix+k+".", out)
		}
	}
}

// TestStatusJSONKeys: status --json is read by scripts: its key set is an
// interface, changed on purpose or not at all.
func TestStatusJSONKeys(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)
	var got []string
	statusKeys(statusOf(t, e, mnt), "", &got)
	sort.Strings(got)
	want := strings.Fields(`bytes_served cache cache.budget cache.bytes_from_cache cache.bytes_from_source
		cache.corrupt_blocks cache.evictions cache.hits cache.misses cache.passthrough_opens cache.uncached_bytes
		cache.usage cache.verified_blocks cache_dir errors log_file mountpoint open_mode opens passthrough pid
		prefetch prefetch.bytes prefetch.done prefetch.in_flight_limit prefetch.max_in_flight prefetch.queued prefetch.running prefetch.stopped schema snapshot
		snapshot.bytes snapshot.dirs snapshot.entries snapshot.files snapshot.other snapshot.symlinks
		snapshot.unreadable source uptime_seconds`)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("status --json keys:\n got %v\nwant %v", got, want)
	}
	e.unmount(mnt)
}

// newSmallEnv is an env with smallSource, and the paths of a mountpoint and
// of a cache directory for it.
func newSmallEnv(t *testing.T) (e *env, src, mnt, cache string) {
	t.Helper()
	e = newEnv(t)
	return e, smallSource(t, e), filepath.Join(e.tmp, "mnt"), filepath.Join(e.tmp, "cache")
}

// TestModesOfWhatCachefsWrites: the cache directory 0700, the control
// socket 0600, a saved index 0644 less the umask.
func TestModesOfWhatCachefsWrites(t *testing.T) {
	e, src, mnt, cache := newSmallEnv(t)
	idx := filepath.Join(e.tmp, "saved.index")
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	e.mount(src, mnt, "--cache-dir", cache, "--save-index", idx)
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{cache, 0o700},
		{filepath.Join(cache, "control.sock"), 0o600},
		{idx, 0o644 &^ os.FileMode(umask)},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("%s has mode %o, want %o", c.path, fi.Mode().Perm(), c.want)
		}
	}
	e.unmount(mnt)
}

// TestRemountAfterSourceChanged: a file rewritten on the source between
// two mounts of the same cache directory is served as it is now, never
// from the blocks cached of its old version.
func TestRemountAfterSourceChanged(t *testing.T) {
	e := newEnv(t)
	old := bytes.Repeat([]byte("old!"), 1<<18)
	src := recSource(t, e, "src", old)
	mnt := filepath.Join(e.tmp, "mnt")
	cache := filepath.Join(e.tmp, "cache")
	e.mount(src, mnt, "--cache-dir", cache)
	if !bytes.Equal(readAll(t, filepath.Join(mnt, "rec")), old) {
		t.Fatal("first mount: bytes differ")
	}
	e.unmount(mnt)
	for _, now := range [][]byte{bytes.Repeat([]byte("new?"), 1<<18), bytes.Repeat([]byte("longer"), 1<<18)} {
		if err := os.WriteFile(filepath.Join(src, "rec"), now, 0o644); err != nil {
			t.Fatal(err)
		}
		e.mount(src, mnt, "--cache-dir", cache)
		if !bytes.Equal(readAll(t, filepath.Join(mnt, "rec")), now) {
			t.Errorf("after the source changed (%d bytes): the old version's bytes were served", len(now))
		}
		e.unmount(mnt)
	}
}

// TestReuseIndexCorruptWalks: a kept index that no longer decodes makes
// the mount walk again, not fail.
func TestReuseIndexCorruptWalks(t *testing.T) {
	e := newEnv(t)
	src := filepath.Join(e.tmp, "src")
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d", "f"), []byte("x"), 0o644)
	mnt := filepath.Join(e.tmp, "mnt")
	cache := filepath.Join(e.tmp, "cache")
	e.mount(src, mnt, "--cache-dir", cache, "--reuse-index")
	e.unmount(mnt)
	kept := filepath.Join(cache, "snapshot.index")
	b, err := os.ReadFile(kept)
	if err != nil {
		t.Fatalf("no kept index: %v", err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(kept, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// Below the root, so that only a walk can show it.
	os.WriteFile(filepath.Join(src, "d", "new"), []byte("y"), 0o644)
	e.mount(src, mnt, "--cache-dir", cache, "--reuse-index")
	if _, err := os.Lstat(filepath.Join(mnt, "d", "new")); err != nil {
		t.Errorf("a corrupt kept index was used instead of a walk: %v", err)
	}
	e.unmount(mnt)
}

// TestStatusAnswersWhileReadsWait: with the source hung and a read waiting
// on it, status still answers.
func TestStatusAnswersWhileReadsWait(t *testing.T) {
	e := newEnv(t)
	want := bytes.Repeat([]byte("eeg."), 1<<18)
	data := recSource(t, e, "data", want)
	slow := filepath.Join(e.tmp, "slow")
	mnt := filepath.Join(e.tmp, "mnt")
	if err := os.Mkdir(slow, 0o755); err != nil {
		t.Fatal(err)
	}
	server := startSlowfs(t, data, slow)
	pid, _ := e.mount(slow, mnt, "--prefetch", "off", "--read-ahead", "0")
	stopProcess(t, server)
	type readResult struct {
		b   []byte
		err error
	}
	read := make(chan readResult, 1)
	go func() {
		b, err := os.ReadFile(filepath.Join(mnt, "rec"))
		read <- readResult{b, err}
	}()
	waitFor(t, "the daemon to wait on the hung source", func() bool { return waitsOnFUSE(pid) })
	if r := e.runGuarded("status", mnt); r.code != 0 || !strings.Contains(r.stdout, mnt) {
		t.Errorf("status while a read waits: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if err := syscall.Kill(server, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-read:
		if r.err != nil || !bytes.Equal(r.b, want) {
			t.Errorf("the waiting read returned other bytes once the source answered (%d bytes, %v)", len(r.b), r.err)
		}
	case <-time.After(hangGuard):
		t.Fatal("the read never finished once the source answered")
	}
	e.unmount(mnt)
}

// TestReadAhead: a sequential read fetches the --read-ahead blocks after
// it (design.md, --help). Blocks 0 and 1 read in order (the first read of
// a file is not sequential; the second misses) leave exactly blocks 0-5
// fetched with --read-ahead 4; --read-ahead 0 fetches only what is read.
// Counted at the source itself.
func TestReadAhead(t *testing.T) {
	// Four blocks: the last two are fetched ahead by the second read, so
	// they are served from the cache, and read-ahead must go on from them.
	const block, read = 64 << 10, 4
	for _, ra := range []int{0, 4} {
		t.Run(strconv.Itoa(ra), func(t *testing.T) {
			f := newCacheFixture(t, map[string]int{"rec": 4 << 20}, slowfs.Options{})
			mnt := filepath.Join(f.e.tmp, "mnt")
			f.mount(mnt, "--read-ahead", strconv.Itoa(ra), "--block-size", "64KiB", "--prefetch", "off", "--passthrough", "off")
			fh, err := os.Open(filepath.Join(mnt, "rec"))
			if err != nil {
				t.Fatal(err)
			}
			// Without the kernel's own read-ahead, the daemon serves
			// exactly the blocks read, so any more from the source is
			// cachefs's read-ahead; with it, the kernel may ask for
			// those blocks too and hide it.
			if err := unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_RANDOM); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, block)
			for k := 0; k < read; k++ {
				off := k * block
				if _, err := fh.ReadAt(p, int64(off)); err != nil || !bytes.Equal(p, f.files["rec"][off:off+len(p)]) {
					t.Fatalf("read at %d: %v", off, err)
				}
				// Each read after the first moves read-ahead on; waiting
				// for it makes the next reads land on fetched blocks.
				if k > 0 {
					ahead := uint64((k + 1 + ra) * block)
					waitFor(t, "blocks fetched ahead", func() bool { return f.sfs.Counts().BytesRead >= ahead })
				}
			}
			fh.Close()
			want := uint64((read + ra) * block)
			waitFor(t, "blocks fetched ahead", func() bool { return f.sfs.Counts().BytesRead >= want })
			if served := num(t, statusOf(t, f.e, mnt), "bytes_served"); served != read*block {
				t.Errorf("the daemon served %v bytes for %d read", served, read*block)
			}
			f.e.unmount(mnt)
			if got := f.sfs.Counts().BytesRead; got != want {
				t.Errorf("--read-ahead %d: %d blocks read in order took %d bytes from the source, want %d (%d blocks)", ra, read, got, want, read+ra)
			}
		})
	}
}

// TestRestartScanEnforcesBudget: files cached by an earlier mount count
// against a smaller --cache-size once the new mount has scanned them, and
// are evicted down to it.
func TestRestartScanEnforcesBudget(t *testing.T) {
	f := newCacheFixture(t, sizedFiles(6, "f%d", 1<<20), slowfs.Options{})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--cache-size", "16MiB", "--prefetch", "off")
	f.readAllEqual(t, mnt, "first mount")
	f.e.unmount(mnt)
	if n := cacheBytes(t, f.cacheDir); n < 6<<20 {
		t.Fatalf("the first mount cached %d bytes, want all 6 MiB", n)
	}
	f.mount(mnt, "--cache-size", "2MiB", "--prefetch", "off")
	waitFor(t, "the restart scan to evict", func() bool {
		return num(t, statusOf(t, f.e, mnt), "cache.evictions") > 0
	})
	if u := num(t, statusOf(t, f.e, mnt), "cache.usage"); u > 2<<20 {
		t.Errorf("usage %v after the scan, over the 2 MiB budget", u)
	}
	// The presence logs take a page or two besides the budgeted blocks.
	if n := cacheBytes(t, f.cacheDir); n > 2<<20+64<<10 {
		t.Errorf("the cache holds %d bytes on disk after the scan, over the 2 MiB budget", n)
	}
	f.e.unmount(mnt)
}

// TestWarmInterrupted: Ctrl-C stops `cachefs warm` with exit 130, and the
// mount serves on.
func TestWarmInterrupted(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"big": 64 << 20}, slowfs.Options{Bandwidth: 4 << 20})
	mnt := filepath.Join(f.e.tmp, "mnt")
	f.mount(mnt, "--prefetch", "off")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	cmd := f.e.command(ctx, "warm", mnt)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "warm to start reading", func() bool { return f.sfs.Counts().BytesRead > 0 })
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code := exitCodeOf(t, cmd.Wait())
	if ctx.Err() != nil {
		t.Fatal("warm ignored SIGINT")
	}
	if code != 130 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("interrupted warm: exit %d (want 130)\n%s%s", code, out.String(), errb.String())
	}
	if r := f.e.runGuarded("status", mnt); r.code != 0 {
		t.Errorf("status after an interrupted warm: exit %d %s", r.code, r.stderr)
	}
	f.e.unmount(mnt)
}

// TestSigtermWithFilesOpen: SIGTERM to the daemon detaches the mount at
// once while a file is open, the open file reads on to its end, and the
// daemon exits once it is closed.
func TestSigtermWithFilesOpen(t *testing.T) {
	e := newEnv(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<17)
	src := recSource(t, e, "src", want)
	mnt := filepath.Join(e.tmp, "mnt")
	pid, _ := e.mount(src, mnt, "--prefetch", "off", "--read-ahead", "0")
	fh, err := os.Open(filepath.Join(mnt, "rec"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	got := make([]byte, len(want))
	if _, err := fh.ReadAt(got[:4096], 0); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mount to be detached", func() bool { return !isMounted(mnt) })
	if _, err := fh.ReadAt(got[4096:], 4096); err != nil {
		t.Fatalf("reading on after SIGTERM: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Error("bytes read across SIGTERM differ from the source")
	}
	fh.Close()
	if !waitGone(pid, hangGuard) {
		t.Error("the daemon did not exit once the file was closed")
	}
}

// TestMountSummaryLine: mount prints one line, and only it, naming the
// source, the mountpoint, the entries, directories, files and bytes, the
// walk's seconds, the unreadable entries, the cache directory, the log file
// and the daemon's pid; without a terminal it draws no progress.
func TestMountSummaryLine(t *testing.T) {
	e, src, mnt, cache := newSmallEnv(t)
	args := []string{"mount", src, mnt, "--cache-dir", cache}
	r := e.run(args...)
	if r.code != 0 {
		t.Fatalf("mount: exit %d\n%s", r.code, r.stderr)
	}
	if r.stderr != "" {
		t.Errorf("mount wrote to stderr without a terminal: %q", r.stderr)
	}
	re := regexp.MustCompile(`^cachefs: serving (\S+) at (\S+): 2 entries \(1 dirs, 1 files, 8 B\) snapshotted in [0-9.]+s, 0 unreadable; cache (\S+); log (\S+); daemon pid (\d+)\n$`)
	m := re.FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("mount's summary %q does not match %s", r.stdout, re)
	}
	if m[1] != src || m[2] != mnt || m[3] != cache {
		t.Errorf("summary names source %s, mountpoint %s, cache %s; want %s, %s, %s", m[1], m[2], m[3], src, mnt, cache)
	}
	if _, err := os.Stat(m[4]); err != nil {
		t.Errorf("the log file the summary names: %v", err)
	}
	if pid, _ := strconv.Atoi(m[5]); !processAlive(pid) {
		t.Errorf("the daemon pid the summary names, %d, is not running", pid)
	}
	e.unmount(mnt)
}

// TestCacheSizeDefaultIsHalf: without --cache-size the budget is half the
// cache filesystem's size; a percentage given is a share of the same.
func TestCacheSizeDefaultIsHalf(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	for _, c := range []struct {
		flag    []string
		percent float64
	}{{nil, 50}, {[]string{"--cache-size", "80%"}, 80}} {
		mnt := filepath.Join(e.tmp, fmt.Sprintf("mnt%g", c.percent))
		cache := filepath.Join(e.tmp, fmt.Sprintf("cache%g", c.percent))
		e.mount(src, mnt, append([]string{"--cache-dir", cache}, c.flag...)...)
		var st unix.Statfs_t
		if err := unix.Statfs(cache, &st); err != nil {
			t.Fatal(err)
		}
		want := float64(int64(float64(st.Blocks) * float64(st.Bsize) * c.percent / 100))
		if got := num(t, statusOf(t, e, mnt), "cache.budget"); got != want {
			t.Errorf("%v: budget %v, want %g%% of the cache filesystem, %v", c.flag, got, c.percent, want)
		}
		e.unmount(mnt)
	}
}

// TestSigquitDumpsStacks: SIGQUIT makes the daemon write its goroutines'
// stacks to the log and exit, leaving a dead mount that the next unmount
// cleans.
func TestSigquitDumpsStacks(t *testing.T) {
	e, src, mnt, cache := newSmallEnv(t)
	pid, _ := e.mount(src, mnt, "--cache-dir", cache)
	if err := syscall.Kill(pid, syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	if !waitGone(pid, hangGuard) {
		t.Fatal("the daemon did not exit on SIGQUIT")
	}
	if log := string(readAll(t, filepath.Join(cache, "cachefs.log"))); !strings.Contains(log, "goroutine ") {
		t.Errorf("no goroutine stacks in the log after SIGQUIT:\n%s", log)
	}
	if !isMounted(mnt) {
		t.Error("SIGQUIT unmounted: the docs say it leaves a dead mount")
	}
	if r := e.runGuarded("unmount", mnt); r.code != 0 || isMounted(mnt) {
		t.Errorf("unmount of the dead mount: exit %d, mounted %v\n%s%s", r.code, isMounted(mnt), r.stdout, r.stderr)
	}
}

// TestUnmountOfUnansweringMount: a cachefs mount with no daemon on record
// (its record removed) whose daemon does not answer is probed for a
// bounded time and left mounted: exit 8, "does not answer".
func TestUnmountOfUnansweringMount(t *testing.T) {
	s := mountStopped(t)
	if err := os.Remove(filepath.Join(s.e.tmp, "run", recordName(s.mnt))); err != nil {
		t.Fatalf("the mount's record: %v", err)
	}
	s.wantRefused(t, 8, "does not answer", "unmount", s.mnt)
	s.resume(t)
}

// TestMetricsPortTakenKeepsMount: a --metrics-addr port already taken
// costs the job its endpoint, with a warning in the log, not its mount;
// the --metrics-file is written 0644.
func TestMetricsPortTakenKeepsMount(t *testing.T) {
	e, src, mnt, cache := newSmallEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	file := filepath.Join(e.tmp, "cachefs.prom")
	e.mount(src, mnt, "--cache-dir", cache, "--metrics-addr", port, "--metrics-file", file)
	if b := readAll(t, filepath.Join(mnt, "f")); string(b) != "contents" {
		t.Errorf("read through a mount whose metrics port was taken: %q", b)
	}
	e.unmount(mnt)
	warned := false
	for _, l := range strings.Split(string(readAll(t, filepath.Join(cache, "cachefs.log"))), "\n") {
		warned = warned || strings.Contains(l, "no metrics endpoint") && strings.Contains(l, port)
	}
	if !warned {
		t.Errorf("the log has no line warning that port %s is taken", port)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatalf("no metrics file: %v", err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("the metrics file has mode %o, want 644", fi.Mode().Perm())
	}
}

// TestMountTableEntry: the mount table shows the source path as the
// mount's source and fuse.cachefs as its type.
func TestMountTableEntry(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)
	m, ok, err := mounttable.Find(mnt)
	if err != nil || !ok {
		t.Fatalf("%s not in the mount table: %v", mnt, err)
	}
	if m.FSType != "fuse.cachefs" || m.Source != src {
		t.Errorf("mount table entry: type %q, source %q; want fuse.cachefs, %s", m.FSType, m.Source, src)
	}
	e.unmount(mnt)
}

// TestCacheDirTightened: a --cache-dir of the user's own that is open to
// others is tightened to 0700, not refused.
func TestCacheDirTightened(t *testing.T) {
	e, src, mnt, cache := newSmallEnv(t)
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	e.mount(src, mnt, "--cache-dir", cache)
	if fi, err := os.Stat(cache); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("--cache-dir of mode 0755 after the mount: %v, want 0700", fi.Mode().Perm())
	}
	e.unmount(mnt)
}

// TestMountOptions: a mount is always ro, nosuid and nodev, with
// default_permissions (the kernel checks modes and ACLs), and open to other
// users only with --allow-other.
func TestMountOptions(t *testing.T) {
	e := newEnv(t)
	src := smallSource(t, e)
	for _, c := range []struct {
		flags       []string
		allowOthers bool
	}{{nil, false}, {[]string{"--allow-other"}, true}} {
		mnt := filepath.Join(e.tmp, fmt.Sprintf("mnt-%v", c.allowOthers))
		e.mount(src, mnt, append([]string{"--cache-dir", mnt + ".cache"}, c.flags...)...)
		opts := mountOptionsAt(t, mnt)
		has := map[string]bool{}
		for _, o := range strings.FieldsFunc(opts, func(r rune) bool { return r == ',' || r == ' ' }) {
			has[o] = true
		}
		if !has["ro"] || !has["nosuid"] || !has["nodev"] || !has["default_permissions"] || has["allow_other"] != c.allowOthers {
			t.Errorf("%v: mount options %q; want ro, nosuid, nodev, default_permissions, allow_other %v", c.flags, opts, c.allowOthers)
		}
		e.unmount(mnt)
	}
}
