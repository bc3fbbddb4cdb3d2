package peer

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"hash/crc32"
)

const testBS = 64 << 10

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// countingSource counts the bytes read from the shared source by every
// node together.
type countingSource struct {
	blockcache.Source
	bytes atomic.Int64
	opens atomic.Int64
}

func (c *countingSource) Open(key blockcache.Key) (blockcache.SourceFile, error) {
	c.opens.Add(1)
	f, err := c.Source.Open(key)
	if err != nil {
		return nil, err
	}
	return &countingFile{f, c}, nil
}

type countingFile struct {
	blockcache.SourceFile
	c *countingSource
}

func (f *countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.SourceFile.ReadAt(p, off)
	f.c.bytes.Add(int64(n))
	return n, err
}

// tree is a source directory, its snapshot and the keys of its files.
type tree struct {
	root  string
	snap  *snapshot.Snapshot
	keys  []blockcache.Key
	data  map[string][]byte
	total int64
	src   *countingSource
}

func newTree(t testing.TB, sizes map[string]int) *tree {
	t.Helper()
	root := t.TempDir()
	data := map[string][]byte{}
	var total int64
	for rel, n := range sizes {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, n)
		rand.Read(b)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		data[rel] = b
		total += int64(n)
	}
	tr := walkTree(t, root)
	tr.data, tr.total = data, total
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil {
		t.Fatal(err)
	}
	ds, err := blockcache.NewDirSource(root, st.Dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ds.Close() })
	tr.src = &countingSource{Source: ds}
	return tr
}

// testNode is one node of a cluster: its cache, peer node and server.
type testNode struct {
	addr  string
	node  *Node
	cache *blockcache.Cache
	stop  context.CancelFunc
	done  chan struct{}
}

// kill stops the node's server; its peers then find nothing listening.
func (n *testNode) kill() {
	n.stop()
	<-n.done
}

// cluster starts n nodes over tr on 127.0.0.1, each with its own cache.
// extra addresses join the peer list without a node behind them.
func cluster(t testing.TB, tr *tree, n int, mod func(*Config), extra ...string) []*testNode {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	peers := append(append([]string{}, addrs...), extra...)
	var nodes []*testNode
	for i, ln := range lns {
		cfg := Config{Self: addrs[i], Peers: peers, Secret: testSecret, BlockSize: testBS,
			Timeout: 2 * time.Second, Logger: zerolog.Nop()}
		if mod != nil {
			mod(&cfg)
		}
		node, err := New(cfg, tr.src)
		if err != nil {
			t.Fatal(err)
		}
		c, err := blockcache.Open(blockcache.Options{Dir: t.TempDir(), BlockSize: cfg.BlockSize, ReadAhead: -1,
			PrefetchBlock: node.Prefetches, Logger: zerolog.Nop()}, node)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		tn := &testNode{addr: addrs[i], node: node, cache: c, stop: cancel, done: make(chan struct{})}
		go func() {
			defer close(tn.done)
			node.Serve(ctx, ln, SnapshotFiles{tr.snap}, CacheBlocks{c})
		}()
		t.Cleanup(func() {
			tn.kill()
			node.Close()
			c.Close()
		})
		nodes = append(nodes, tn)
	}
	return nodes
}

// readAll reads every file of tr through node's cache in a shuffled
// order and checks the bytes.
func readAll(t *testing.T, tr *tree, n *testNode, seed int) {
	t.Helper()
	order := append([]blockcache.Key{}, tr.keys...)
	for i := range order {
		j := (i*7 + seed*13) % len(order)
		order[i], order[j] = order[j], order[i]
	}
	for _, k := range order {
		h, err := n.cache.OpenFile(k)
		if err != nil {
			t.Error(err)
			return
		}
		buf := make([]byte, k.Size)
		got, err := h.ReadAt(context.Background(), buf, 0)
		h.Close()
		if err != nil || got != int(k.Size) {
			t.Errorf("%s on %s: read %d of %d: %v", k.Path, n.addr, got, k.Size, err)
			return
		}
		if !bytes.Equal(buf, tr.data[k.Path]) {
			t.Errorf("%s on %s: bytes differ from the source", k.Path, n.addr)
		}
	}
}

func readEverywhere(t *testing.T, tr *tree, nodes []*testNode) {
	t.Helper()
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readAll(t, tr, n, i)
		}()
	}
	wg.Wait()
}

var sizes = map[string]int{
	"a":      3*testBS + 100,
	"b":      testBS,
	"c/d":    10*testBS + 17,
	"c/e":    5,
	"f/g/h":  7 * testBS,
	"f/g/i":  2*testBS - 1,
	"f/j":    20 * testBS,
	"k/l/mm": 4 * testBS,
}

func TestOneSourceReadPerBlockAcrossNodes(t *testing.T) {
	tr := newTree(t, sizes)
	nodes := cluster(t, tr, 3, nil)
	readEverywhere(t, tr, nodes)
	if got := tr.src.bytes.Load(); got != tr.total {
		t.Errorf("source served %d bytes for a tree of %d (%.2fx)", got, tr.total, float64(got)/float64(tr.total))
	}
	var fromPeers, toPeers, fromSource int64
	for _, n := range nodes {
		st := n.node.Stats()
		fromPeers += st.BytesFromPeers
		toPeers += st.BytesToPeers
		fromSource += st.BytesFromSource
	}
	if fromPeers != toPeers || fromSource != tr.total || fromPeers == 0 {
		t.Errorf("from peers %d, served to peers %d, from source %d (tree %d)", fromPeers, toPeers, fromSource, tr.total)
	}
	// A second pass is all local hits: no byte crosses the network.
	before := nodes[0].node.Stats().BytesFromPeers
	readAll(t, tr, nodes[0], 5)
	if after := nodes[0].node.Stats().BytesFromPeers; after != before {
		t.Errorf("cached reads fetched %d bytes from peers", after-before)
	}
}

func TestDeadPeerCostsASourceRead(t *testing.T) {
	tr := newTree(t, sizes)
	// A listed node with nothing listening: a closed port on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	nodes := cluster(t, tr, 2, func(c *Config) { c.Backoff = time.Hour }, dead)
	readEverywhere(t, tr, nodes)
	for _, n := range nodes {
		for _, p := range n.node.Stats().Peers {
			if p.Addr == dead && (p.Failures != 1 || !p.Avoided) {
				t.Errorf("%s: dead peer failed %d times, avoided %v; want one failure, then avoided", n.addr, p.Failures, p.Avoided)
			}
		}
	}
}

func TestPeerKilledMidRun(t *testing.T) {
	tr := newTree(t, sizes)
	nodes := cluster(t, tr, 3, nil)
	readAll(t, tr, nodes[0], 0)
	nodes[2].kill()
	// Nodes 0 and 1 finish with correct bytes; what node 2 owned comes
	// from node 0's cache or the source.
	readEverywhere(t, tr, nodes[:2])
}

func walkTree(t testing.TB, root string) *tree {
	t.Helper()
	snap, err := snapshot.Walk(context.Background(), root, snapshot.WalkOptions{Walkers: 4, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	tr := &tree{root: root, snap: snap}
	for i := uint32(0); i < uint32(snap.Len()); i++ {
		if a := snap.Attr(i); a.IsRegular() {
			tr.keys = append(tr.keys, blockcache.Key{Path: snap.Path(i), Ino: a.Ino, Size: a.Size, Mtime: a.Mtime})
		}
	}
	return tr
}

func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// TestPrefetchFetchesOwnShare checks that a node's prefetch fetches the
// blocks it owns, from the source, and asks no peer; once every node has
// prefetched its share, a node's reads of the rest are all peer hits and
// the source has served the file once.
func TestPrefetchFetchesOwnShare(t *testing.T) {
	tr := newTree(t, map[string]int{"f": 64 * testBS})
	nodes := cluster(t, tr, 2, nil)
	key := tr.keys[0]
	prefetch := func(n *testNode) {
		t.Helper()
		if _, err := n.cache.Prefetch(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}
	prefetch(nodes[0])
	st0, st1 := nodes[0].node.Stats(), nodes[1].node.Stats()
	owned := int64(0)
	for b := range int64(64) {
		if nodes[0].node.ring.owner(key, b) == nodes[0].addr {
			owned++
		}
	}
	if st0.BytesFromPeers != 0 || st1.BytesToPeers != 0 || st0.BytesFromSource != owned*testBS {
		t.Fatalf("prefetch: %d bytes from peers, %d served by the other node, %d from the source; want 0, 0, %d (the blocks it owns)",
			st0.BytesFromPeers, st1.BytesToPeers, st0.BytesFromSource, owned*testBS)
	}
	prefetch(nodes[1])
	readAll(t, tr, nodes[0], 0)
	st0, st1 = nodes[0].node.Stats(), nodes[1].node.Stats()
	if st0.BytesFromPeers != key.Size-owned*testBS || st0.BytesFromSource+st1.BytesFromSource != key.Size {
		t.Errorf("after both prefetched, node 0 read %d bytes from its peer (want %d) and the source served %d (want %d)",
			st0.BytesFromPeers, key.Size-owned*testBS, st0.BytesFromSource+st1.BytesFromSource, key.Size)
	}
}

// TestPrefetchTakesOverAvoidedOwner checks that blocks of an owner being
// avoided are prefetched by the node itself.
func TestPrefetchTakesOverAvoidedOwner(t *testing.T) {
	tr := newTree(t, map[string]int{"f": 16 * testBS})
	nodes := cluster(t, tr, 1, nil, "127.0.0.1:1")
	ps := nodes[0].node.peers["127.0.0.1:1"]
	key := tr.keys[0]
	theirs := 0
	for b := range int64(16) {
		if mine := nodes[0].node.ring.owner(key, b) == nodes[0].addr; mine != nodes[0].node.Prefetches(key, b) {
			t.Fatalf("block %d: owned %v, prefetched %v", b, mine, !mine)
		} else if !mine {
			theirs++
		}
	}
	if theirs == 0 {
		t.Fatal("the other node owns no block")
	}
	ps.failed(timeNow(), time.Hour, false)
	for b := range int64(16) {
		if !nodes[0].node.Prefetches(key, b) {
			t.Errorf("block %d not prefetched while its owner is avoided", b)
		}
	}
}
