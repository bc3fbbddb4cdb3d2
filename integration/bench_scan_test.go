package integration

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// statWalk lists every directory under root and lstats every entry, one
// at a time, as `find -ls` does, and returns the entries seen.
func statWalk(tb testing.TB, root string) int {
	n := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkMetadataScan is the brief's metadata-scan target: walk and
// stat every entry of a 24,000-entry tree through the mount and on local
// disk, alternately, five rounds in one run, once with the kernel's
// caches dropped before each walk (cold: the mount's LOOKUPs and READDIRs
// reach the daemon, ext4's inode reads reach the disk) and once warm. Run
// with -benchtime=1x; needs root for the cold rounds.
func BenchmarkMetadataScan(b *testing.B) {
	base := b.TempDir()
	src := filepath.Join(base, "src")
	makeEEGTree(b, src, 50, 20, 20_000)
	e := &env{t: b, tmp: base}
	mnt := filepath.Join(base, "mnt")
	e.mount(src, mnt, "--cache-dir", filepath.Join(base, "cache"))
	defer e.unmount(mnt)
	drop := func() {
		syscall.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
			b.Fatalf("cannot drop caches (needs root): %v", err)
		}
	}
	timed := func(root string, cold bool) (time.Duration, int) {
		if cold {
			drop()
		}
		start := time.Now()
		n := statWalk(b, root)
		return time.Since(start), n
	}
	for i := 0; i < b.N; i++ {
		for _, cold := range []bool{true, false} {
			var m, l time.Duration
			for r := 0; r < 5; r++ {
				dm, nm := timed(mnt, cold)
				dl, nl := timed(src, cold)
				if nm != nl {
					b.Fatalf("the mount shows %d entries, the source %d", nm, nl)
				}
				m += dm
				l += dl
			}
			name := "warm"
			if cold {
				name = "cold"
			}
			b.ReportMetric(m.Seconds()/5, name+"-mount-s")
			b.ReportMetric(l.Seconds()/5, name+"-local-s")
			b.ReportMetric(float64(m)/float64(l), name+"-mount/local")
		}
	}
}
