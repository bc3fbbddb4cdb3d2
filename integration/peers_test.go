package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// peerNode is one daemon of a multi-node job on this machine: its own
// loopback address, mountpoint and cache directory, over the job's one
// slow source.
type peerNode struct {
	addr, mnt, cache string
	pid              int
}

// peerJob mounts n daemons on 127.0.0.2, 127.0.0.3, ... over f's source,
// all listed as each other's peers, sharing one secret file.
func peerJob(t *testing.T, f *cacheFixture, n int, extra ...string) []*peerNode {
	t.Helper()
	port := freePort(t, "127.0.0.2")
	var nodes []*peerNode
	var list []string
	for i := range n {
		addr := net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+2), port)
		list = append(list, addr)
		nodes = append(nodes, &peerNode{addr: addr,
			mnt:   filepath.Join(f.e.tmp, fmt.Sprintf("mnt%d", i)),
			cache: filepath.Join(f.e.tmp, fmt.Sprintf("cache%d", i))})
	}
	job := filepath.Join(f.e.tmp, "job")
	if err := os.Mkdir(job, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		os.Mkdir(nd.mnt, 0o755)
		args := append([]string{"--cache-dir", nd.cache, "--peers", strings.Join(list, ","), "--listen", nd.addr,
			"--peer-secret-file", filepath.Join(job, "peer.secret")}, extra...)
		nd.pid, _ = f.e.mount(f.slow, nd.mnt, args...)
	}
	return nodes
}

// readShuffled reads every fixture file through mnt in an order of its
// own, as one data-parallel rank does, and checks the bytes.
func readShuffled(t *testing.T, f *cacheFixture, mnt string, seed int64) {
	var names []string
	for name := range f.files {
		names = append(names, name)
	}
	shuffle(names, seed)
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil {
			t.Errorf("%s: %v", mnt, err)
			return
		}
		if !bytes.Equal(b, f.files[name]) {
			t.Errorf("%s/%s differs from the source", mnt, name)
		}
	}
}

func shuffle(names []string, seed int64) {
	sort.Strings(names)
	rand.New(rand.NewSource(seed)).Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
}

func peerTree() (map[string]int, int64) {
	sizes := map[string]int{}
	var total int64
	r := rand.New(rand.NewSource(7))
	for i := range 24 {
		n := 64<<10 + r.Intn(3<<20)
		sizes[fmt.Sprintf("sub-%02d/eeg/run-%d.bdf", i%6, i)] = n
		sizes[fmt.Sprintf("sub-%02d/eeg/run-%d.json", i%6, i)] = 300 + i
		total += int64(n + 300 + i)
	}
	return sizes, total
}

func TestPeersReadTheSourceOnce(t *testing.T) {
	sizes, total := peerTree()
	f := newCacheFixture(t, sizes, slowfs.Options{ReadLatency: 500 * time.Microsecond, Bandwidth: 256 << 20})
	nodes := peerJob(t, f, 3)
	f.sfs.Reset()
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readShuffled(t, f, nd.mnt, int64(i))
		}()
	}
	wg.Wait()
	got := f.sfs.Counts().BytesRead
	t.Logf("3 nodes read a tree of %d bytes; the source served %d (%.2fx)", total, got, float64(got)/float64(total))
	if float64(got) > 1.1*float64(total) {
		t.Errorf("the source served %.2fx the tree to 3 nodes with peers; want at most 1.1x", float64(got)/float64(total))
	}
	st := f.e.run("status", nodes[0].mnt)
	if st.code != 0 || !strings.Contains(st.stdout, "from peers") || !strings.Contains(st.stdout, nodes[1].addr) {
		t.Errorf("status of %s: exit %d, no peer figures:\n%s%s", nodes[0].addr, st.code, st.stdout, st.stderr)
	}
	for _, nd := range nodes {
		r := f.e.unmount(nd.mnt)
		t.Log(r.stdout)
		if !strings.Contains(r.stdout, "from peers") {
			t.Errorf("unmount summary of %s says nothing of peers: %q", nd.addr, r.stdout)
		}
	}
}

func TestPeerKilledMidRunOthersFinish(t *testing.T) {
	sizes, _ := peerTree()
	// A slow link, so the kill lands while blocks are still moving.
	f := newCacheFixture(t, sizes, slowfs.Options{ReadLatency: 500 * time.Microsecond, Bandwidth: 32 << 20})
	nodes := peerJob(t, f, 3)
	var wg sync.WaitGroup
	for i, nd := range nodes[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readShuffled(t, f, nd.mnt, int64(i))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if !blocksMoving(t, f, done, 4<<20) {
		return
	}
	dead := nodes[2]
	syscall.Kill(dead.pid, syscall.SIGKILL)
	waitGone(dead.pid, 10*time.Second)
	unix.Unmount(dead.mnt, unix.MNT_DETACH)
	<-done
	for _, nd := range nodes[:2] {
		f.e.unmount(nd.mnt)
	}
}

// blocksMoving waits until the source has served n bytes while the
// readers, which close done when they end, are still reading. It fails the
// test, once the readers are done, if that moment never comes: a kill
// after it would prove nothing.
func blocksMoving(t *testing.T, f *cacheFixture, done <-chan struct{}, n uint64) bool {
	t.Helper()
	deadline := time.After(hangGuard)
	for f.sfs.Counts().BytesRead < n {
		select {
		case <-done:
			t.Errorf("the readers finished with %d bytes from the source, fewer than %d", f.sfs.Counts().BytesRead, n)
			return false
		case <-deadline:
			t.Errorf("the source served %d bytes in %s, fewer than %d", f.sfs.Counts().BytesRead, hangGuard, n)
			<-done
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-done:
		t.Errorf("the readers were done before %d bytes came from the source", n)
		return false
	default:
		return true
	}
}

func TestPeerRequestWithoutSecretGetsNothing(t *testing.T) {
	sizes, _ := peerTree()
	f := newCacheFixture(t, sizes, slowfs.Options{})
	nodes := peerJob(t, f, 2)
	var name string
	for n := range f.files {
		name = n
		break
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(f.base, name), &st); err != nil {
		t.Fatal(err)
	}
	q := "p=" + name + "&i=" + strconv.FormatUint(st.Ino, 10) + "&s=" + strconv.FormatInt(st.Size, 10) +
		"&m=" + strconv.FormatInt(st.Mtim.Nano(), 10) + "&b=0&bs=1048576"
	for _, hdr := range []map[string]string{
		{},
		{"X-Cachefs-Time": "0", "X-Cachefs-Nonce": strings.Repeat("0", 32), "X-Cachefs-Auth": strings.Repeat("ab", 32)},
	} {
		for _, nd := range nodes {
			req, _ := http.NewRequest(http.MethodGet, "http://"+nd.addr+"/v1/block?"+q, nil)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || len(body) != 0 {
				t.Errorf("%s: unsigned request got %d with %d bytes; want 403 and nothing", nd.addr, resp.StatusCode, len(body))
			}
		}
	}
	f.sfs.Reset()
	if c := f.sfs.Counts(); c.BytesRead != 0 {
		t.Errorf("refused requests read %d bytes of the source", c.BytesRead)
	}
	for _, nd := range nodes {
		f.e.unmount(nd.mnt)
	}
}

func TestPeerSecretFileOpenToOthersRefused(t *testing.T) {
	f := newCacheFixture(t, map[string]int{"a": 10}, slowfs.Options{})
	secret := filepath.Join(f.e.tmp, "peer.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 64)), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(f.e.tmp, "mnt")
	os.Mkdir(mnt, 0o755)
	addr := net.JoinHostPort("127.0.0.2", freePort(t, "127.0.0.2"))
	r := f.e.run("mount", f.slow, mnt, "--cache-dir", f.cacheDir, "--peers", addr, "--listen", addr, "--peer-secret-file", secret)
	if r.code != 15 || !strings.Contains(r.stderr, "chmod 600") {
		t.Errorf("mount with a world-readable secret: exit %d, %s", r.code, r.stderr)
	}
	if isMounted(mnt) {
		unix.Unmount(mnt, unix.MNT_DETACH)
		t.Error("mounted with a world-readable secret")
	}
}
