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

// BenchmarkWarmReopen answers where the warm epoch's gap to local disk
// comes from: 1,000 cached files of 374 KiB, already in the page cache,
// re-read through the mount (each open a FUSE OPEN and RELEASE round trip,
// then passthrough or page-cache reads) and from local disk, alternately,
// five times in one run. Run with -benchtime=1x.
func BenchmarkWarmReopen(b *testing.B) {
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	buf := make([]byte, 383000)
	var local, through []string
	for i := 0; i < 1000; i++ {
		p := filepath.Join(src, fmt.Sprintf("rec%04d.bdf", i))
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		local = append(local, p)
	}
	mnt := filepath.Join(e.tmp, "mnt")
	e.mount(src, mnt)
	for _, p := range local {
		through = append(through, filepath.Join(mnt, filepath.Base(p)))
	}
	readAllFiles(through) // fetch into the cache
	readAllFiles(local)
	for i := 0; i < b.N; i++ {
		var m, l time.Duration
		for k := 0; k < 5; k++ {
			m += readAllFiles(through)
			l += readAllFiles(local)
		}
		b.ReportMetric(m.Seconds()/5, "mount-s")
		b.ReportMetric(l.Seconds()/5, "local-s")
		b.ReportMetric(float64(m)/float64(l), "mount/local")
	}
	e.unmount(mnt)
}
