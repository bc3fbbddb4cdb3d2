package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// BenchmarkDemandUnderPrefetch answers: how much does a running prefetch of
// a large directory slow a demand read of an uncached file elsewhere? It
// reads the same 8 MiB file cold, once while the prefetcher works through a
// 200-file directory and once with --prefetch off, side by side in one run,
// behind the slow-source fixture (0.5 ms per read, 200 MB/s shared).
// Run with -benchtime=1x.
func BenchmarkDemandUnderPrefetch(b *testing.B) {
	sizes := map[string]int{"other/demand.bin": 8 << 20}
	for i := 0; i < 200; i++ {
		sizes[fmt.Sprintf("big/f%03d", i)] = 1 << 20
	}
	for i := 0; i < b.N; i++ {
		var secs [2]float64
		for k, mode := range []string{"off", "dir"} {
			f := newCacheFixtureTB(b, sizes, slowfs.Options{ReadLatency: 500 * time.Microsecond, Bandwidth: 200 << 20})
			mnt := filepath.Join(f.e.tmp, "mnt")
			f.mount(mnt, "--prefetch", mode)
			// One open starts the prefetch of the whole directory.
			fh, err := os.Open(filepath.Join(mnt, "big/f000"))
			if err != nil {
				b.Fatal(err)
			}
			fh.Read(make([]byte, 4096))
			fh.Close()
			time.Sleep(50 * time.Millisecond) // let prefetch get going
			start := time.Now()
			if _, err := os.ReadFile(filepath.Join(mnt, "other/demand.bin")); err != nil {
				b.Fatal(err)
			}
			secs[k] = time.Since(start).Seconds()
			f.e.unmount(mnt)
			f.sfs.Unmount()
		}
		b.ReportMetric(secs[0], "demand-s-prefetch-off")
		b.ReportMetric(secs[1], "demand-s-prefetch-on")
		b.ReportMetric(secs[1]/secs[0], "slowdown")
	}
}
