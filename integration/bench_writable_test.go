package integration

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkWritableView compares the views a job can get over one tree:
// the read-only mount, the writable view cachefs mounts (the kernel's
// overlayfs over the read-only mount), and fuse-overlayfs over the
// read-only mount (what an unprivileged user gets). Figures: a cold and a
// warm walk + lstat of the 24,000-entry EEG tree, and a cold sequential
// read of a fully cached 512 MiB file; five rounds, medians. Run with
// -benchtime=1x as root, with fuse-overlayfs installed.
func BenchmarkWritableView(b *testing.B) {
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	makeEEGTree(b, src, 50, 20, 20_000)
	big := filepath.Join(src, "big.bin")
	f, _ := os.Create(big)
	if _, err := io.CopyN(f, rand.Reader, 512<<20); err != nil {
		b.Fatal(err)
	}
	f.Close()
	ro, rw := filepath.Join(e.tmp, "ro"), filepath.Join(e.tmp, "rw")
	e.mount(src, ro, "--cache-dir", filepath.Join(e.tmp, "c-ro"), "--prefetch=off")
	e.mount(src, rw, "--writable", "--cache-dir", filepath.Join(e.tmp, "c-rw"), "--prefetch=off")
	fo := fuseOverlay(b, e, ro)
	for _, m := range []string{ro, rw} {
		readCold(b, filepath.Join(m, "big.bin")) // fills each mount's cache
	}
	setups := []struct{ name, root string }{{"ro", ro}, {"overlay", rw}, {"fuse-overlayfs", fo}}
	const rounds = 5
	for i := 0; i < b.N; i++ {
		res := map[string][3][]time.Duration{}
		for r := 0; r < rounds; r++ {
			for _, s := range setups {
				v := res[s.name]
				v[0] = append(v[0], coldWalk(b, s.root))
				start := time.Now()
				statWalk(b, s.root)
				v[1] = append(v[1], time.Since(start))
				v[2] = append(v[2], readCold(b, filepath.Join(s.root, "big.bin")))
				res[s.name] = v
			}
		}
		for _, s := range setups {
			v := res[s.name]
			cold, warm, read := medianOf(v[0]), medianOf(v[1]), medianOf(v[2])
			b.ReportMetric(cold.Seconds()*1e3, s.name+"-cold-walk-ms")
			b.ReportMetric(warm.Seconds()*1e3, s.name+"-warm-walk-ms")
			b.ReportMetric(float64(512<<20)/read.Seconds()/1e9, s.name+"-read-GB/s")
		}
	}
	unix.Unmount(fo, 0)
	e.unmount(rw)
	e.unmount(ro)
}

func coldWalk(b *testing.B, root string) time.Duration {
	syscall.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("cannot drop caches (needs root): %v", err)
	}
	start := time.Now()
	statWalk(b, root)
	return time.Since(start)
}

func medianOf(ds []time.Duration) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// fuseOverlay mounts fuse-overlayfs over lower with layers of its own.
func fuseOverlay(b *testing.B, e *env, lower string) string {
	b.Helper()
	d := filepath.Join(e.tmp, "fo")
	for _, s := range []string{"upper", "work", "mnt"} {
		os.MkdirAll(filepath.Join(d, s), 0o700)
	}
	mnt := filepath.Join(d, "mnt")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, d, d)
	if out, err := exec.Command("fuse-overlayfs", "-o", opts, mnt).CombinedOutput(); err != nil {
		b.Fatalf("fuse-overlayfs: %v: %s", err, out)
	}
	b.Cleanup(func() {
		if isMounted(mnt) {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	return mnt
}

// BenchmarkPushSmallFiles times the stage-out of 1,000 new 4 KiB files
// (ten directories) written through a writable mount of the 24,000-entry
// tree: `cachefs push`, against the seeds' `rsync -a --update` from the
// whole view to a copy of SOURCE, and rsync of only the new files. Each
// round starts from a fresh copy of SOURCE. Run with -benchtime=1x.
func BenchmarkPushSmallFiles(b *testing.B) {
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	makeEEGTree(b, src, 50, 20, 20_000)
	rw := filepath.Join(e.tmp, "rw")
	e.mount(src, rw, "--writable", "--cache-dir", filepath.Join(e.tmp, "c"))
	payload := strings.Repeat("x", 4096)
	for d := 0; d < 10; d++ {
		dir := filepath.Join(rw, "derivatives", fmt.Sprintf("d%d", d))
		os.MkdirAll(dir, 0o755)
		for f := 0; f < 100; f++ {
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.npy", f)), []byte(payload), 0o644)
		}
	}
	upper := filepath.Join(e.tmp, "c", "writable", "upper")
	fresh := func() {
		os.RemoveAll(filepath.Join(src, "derivatives"))
		syscall.Sync()
	}
	timeIt := func(name string, args ...string) time.Duration {
		fresh()
		cmd := exec.Command(name, args...)
		cmd.Env = e.environ()
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s %v: %v: %s", name, args, err, out)
		}
		return time.Since(start)
	}
	const rounds = 5
	for i := 0; i < b.N; i++ {
		var push, rsyncAll, rsyncNew []time.Duration
		for r := 0; r < rounds; r++ {
			push = append(push, timeIt(binary, "push", rw))
			rsyncAll = append(rsyncAll, timeIt("rsync", "-a", "--update", rw+"/", src+"/"))
			rsyncNew = append(rsyncNew, timeIt("rsync", "-a", "--update", upper+"/", src+"/"))
		}
		b.ReportMetric(medianOf(push).Seconds()*1e3, "push-ms")
		b.ReportMetric(medianOf(rsyncAll).Seconds()*1e3, "rsync-view-ms")
		b.ReportMetric(medianOf(rsyncNew).Seconds()*1e3, "rsync-upper-ms")
	}
	fresh()
	e.unmount(rw)
}
