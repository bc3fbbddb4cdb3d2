package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// BenchmarkPeersFirstEpoch is the multi-node figure: N daemons on
// 127.0.0.2... over one slow source (1 ms per metadata call, 0.5 ms per
// read, a bandwidth cap shared by all), each node reading the whole EEG-like tree once
// in its own shuffled order with two readers, all nodes at once; with
// --peers and as N independent mounts. It reports the source bytes per
// byte of the tree (src/tree) and the seconds of the epoch. Run with
// -benchtime=1x; needs root.
//
// At 200 MB/s the source is not what limits N daemons sharing two cores;
// at 50 MB/s it is, as a shared filesystem under a job of many nodes is.
func BenchmarkPeersFirstEpoch(b *testing.B) {
	for _, mbs := range []int64{200, 50} {
		for _, n := range []int{2, 3, 4} {
			for _, peers := range []bool{false, true} {
				mode := "independent"
				if peers {
					mode = "peers"
				}
				b.Run(fmt.Sprintf("source=%dMBps/nodes=%d/%s", mbs, n, mode), func(b *testing.B) {
					for range b.N {
						ratio, secs := firstEpoch(b, n, peers, mbs*1e6)
						b.ReportMetric(ratio, "src/tree")
						b.ReportMetric(secs, "epoch-s")
					}
				})
			}
		}
	}
}

func firstEpoch(b *testing.B, n int, peers bool, bandwidth int64) (ratio, secs float64) {
	sizes := map[string]int{}
	var total int64
	for i := range 96 {
		rec := 256<<10 + (i*7919)%(1792<<10)
		sizes[fmt.Sprintf("ds/sub-%02d/eeg/sub-%02d_run-%02d_eeg.bdf", i/8, i/8, i%8)] = rec
		sizes[fmt.Sprintf("ds/sub-%02d/eeg/sub-%02d_run-%02d_eeg.json", i/8, i/8, i%8)] = 700
		sizes[fmt.Sprintf("ds/sub-%02d/eeg/sub-%02d_run-%02d_channels.tsv", i/8, i/8, i%8)] = 2000
		total += int64(rec + 2700)
	}
	f := newCacheFixtureTB(b, sizes, slowfs.Options{MetaLatency: time.Millisecond,
		ReadLatency: 500 * time.Microsecond, Bandwidth: bandwidth})
	mnts := benchNodes(b, f, n, peers)
	f.sfs.Reset()
	start := time.Now()
	var wg sync.WaitGroup
	for i, mnt := range mnts {
		for r := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				readShuffledShare(b, f, mnt, int64(i*2+r), r, 2)
			}()
		}
	}
	wg.Wait()
	secs = time.Since(start).Seconds()
	ratio = float64(f.sfs.Counts().BytesRead) / float64(total)
	for _, mnt := range mnts {
		r := f.e.run("unmount", mnt)
		b.Logf("%s", strings.TrimSpace(r.stdout))
	}
	return ratio, secs
}

// benchNodes mounts n daemons over f's source, peers of each other or not.
func benchNodes(b *testing.B, f *cacheFixture, n int, peers bool) []string {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		b.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	var list []string
	for i := range n {
		list = append(list, net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+2), port))
	}
	var mnts []string
	for i := range n {
		mnt := filepath.Join(f.e.tmp, fmt.Sprintf("mnt%d", i))
		os.Mkdir(mnt, 0o755)
		args := []string{"--cache-dir", filepath.Join(f.e.tmp, fmt.Sprintf("cache%d", i))}
		if peers {
			args = append(args, "--peers", strings.Join(list, ","), "--listen", list[i],
				"--peer-secret-file", filepath.Join(f.e.tmp, "peer.secret"))
		}
		f.e.mount(f.slow, mnt, args...)
		mnts = append(mnts, mnt)
	}
	return mnts
}

// readShuffledShare reads reader r's share (of k) of the tree's files
// through mnt in a shuffled order, checking the bytes.
func readShuffledShare(b *testing.B, f *cacheFixture, mnt string, seed int64, r, k int) {
	var names []string
	for name := range f.files {
		names = append(names, name)
	}
	shuffle(names, seed)
	for i, name := range names {
		if i%k != r {
			continue
		}
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || len(got) != len(f.files[name]) || string(got) != string(f.files[name]) {
			b.Errorf("%s/%s: wrong bytes (%v)", mnt, name, err)
			return
		}
	}
}
