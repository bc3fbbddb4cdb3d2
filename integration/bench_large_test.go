package integration

import (
	"crypto/rand"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// readCold reads p whole in 1 MiB reads after dropping the page cache, so
// the bytes come from disk (the cache file's, or the local file's).
func readCold(b *testing.B, p string) time.Duration {
	b.Helper()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		b.Fatalf("cannot drop the page cache (needs root): %v", err)
	}
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, make([]byte, 1<<20)); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// BenchmarkLargeCachedRead is the large-file target: a fully cached 1 GiB
// file read sequentially with the page cache dropped, through a mount that
// passes it through (what --passthrough auto picks for such a tree),
// through one where the kernel opens files and the daemon splices cached
// ranges (--passthrough=off), and from local disk, in turn, three rounds in
// one run. Run with -benchtime=1x; needs root.
func BenchmarkLargeCachedRead(b *testing.B) {
	e := &env{t: b, tmp: b.TempDir()}
	src := filepath.Join(e.tmp, "src")
	os.Mkdir(src, 0o755)
	big := filepath.Join(src, "big.bin")
	f, err := os.Create(big)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 1<<30); err != nil {
		b.Fatal(err)
	}
	f.Close()
	pmnt, smnt := filepath.Join(e.tmp, "pt"), filepath.Join(e.tmp, "splice")
	for _, m := range []struct{ mnt, pt string }{{pmnt, "auto"}, {smnt, "off"}} {
		cache := filepath.Join(e.tmp, "cache-"+m.pt)
		e.mount(src, m.mnt, "--cache-dir", cache, "--passthrough="+m.pt)
		readCold(b, filepath.Join(m.mnt, "big.bin"))
		e.unmount(m.mnt)
		e.mount(src, m.mnt, "--cache-dir", cache, "--passthrough="+m.pt)
	}
	for i := 0; i < b.N; i++ {
		var p, s, l time.Duration
		for r := 0; r < 3; r++ {
			p += readCold(b, filepath.Join(pmnt, "big.bin"))
			s += readCold(b, filepath.Join(smnt, "big.bin"))
			l += readCold(b, big)
		}
		gbs := func(d time.Duration) float64 { return 3 * float64(1<<30) / d.Seconds() / 1e9 }
		b.ReportMetric(gbs(p), "passthrough-GB/s")
		b.ReportMetric(gbs(s), "splice-GB/s")
		b.ReportMetric(gbs(l), "local-GB/s")
		b.ReportMetric(float64(l)/float64(p), "passthrough/local")
		b.ReportMetric(float64(l)/float64(s), "splice/local")
	}
	for _, mnt := range []string{pmnt, smnt} {
		r := e.unmount(mnt)
		b.Log(r.stdout)
	}
}
