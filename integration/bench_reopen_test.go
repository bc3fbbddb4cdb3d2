package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// readAllFiles reads every file in names with 4 goroutines, each opening,
// reading and closing one file at a time: the warm epoch's access pattern.
func readAllFiles(names []string) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := w; i < len(names); i += 4 {
				f, err := os.Open(names[i])
				if err != nil {
					panic(err)
				}
				for {
					if n, _ := f.Read(buf); n == 0 {
						break
					}
				}
				f.Close()
			}
		}(w)
	}
	wg.Wait()
	return time.Since(start)
}

// BenchmarkWarmReopen measures what an open costs once the bytes are in
// the page cache: 1,000 cached files of 374 KiB re-read whole by 4
// goroutines through a mount where the kernel opens files itself (the
// default for such files), through one where every open reaches the daemon
// (--passthrough=on: an OPEN and a RELEASE round trip per file, complete
// files passed through), and from local disk, in turn, five times in one
// run. Run with -benchtime=1x.
func BenchmarkWarmReopen(b *testing.B) {
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	buf := make([]byte, 383000)
	var local []string
	for i := 0; i < 1000; i++ {
		p := filepath.Join(src, fmt.Sprintf("rec%04d.bdf", i))
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		local = append(local, p)
	}
	under := func(dir string) []string {
		var out []string
		for _, p := range local {
			out = append(out, filepath.Join(dir, filepath.Base(p)))
		}
		return out
	}
	kmnt, dmnt := filepath.Join(e.tmp, "kernel"), filepath.Join(e.tmp, "daemon")
	kcache, dcache := filepath.Join(e.tmp, "kcache"), filepath.Join(e.tmp, "dcache")
	// Fill each mount's cache, then remount, so the daemon-opens mount
	// finds every file complete at its first open and passes it through.
	for _, m := range []struct{ mnt, cache, pt string }{{kmnt, kcache, "auto"}, {dmnt, dcache, "on"}} {
		e.mount(src, m.mnt, "--cache-dir", m.cache, "--passthrough="+m.pt)
		readAllFiles(under(m.mnt))
		e.unmount(m.mnt)
		e.mount(src, m.mnt, "--cache-dir", m.cache, "--passthrough="+m.pt)
	}
	kernel, daemon := under(kmnt), under(dmnt)
	readAllFiles(kernel)
	readAllFiles(daemon)
	readAllFiles(local)
	for i := 0; i < b.N; i++ {
		var k, d, l time.Duration
		for r := 0; r < 5; r++ {
			k += readAllFiles(kernel)
			d += readAllFiles(daemon)
			l += readAllFiles(local)
		}
		b.ReportMetric(k.Seconds()/5, "kernel-opens-s")
		b.ReportMetric(d.Seconds()/5, "daemon-opens-s")
		b.ReportMetric(l.Seconds()/5, "local-s")
		b.ReportMetric(float64(k)/float64(l), "kernel/local")
		b.ReportMetric(float64(d)/float64(l), "daemon/local")
	}
	e.unmount(dmnt)
	e.unmount(kmnt)
}
