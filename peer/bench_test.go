package peer

import (
	"context"
	"testing"

	"github.com/cachefs/cachefs/blockcache"
)

// benchBlocks returns a two-node cluster over one 64 MiB file in 1 MiB
// blocks, and the blocks node 1 owns, already in node 1's cache.
func benchBlocks(b *testing.B) ([]*testNode, blockcache.Key, []int64) {
	const bs = 1 << 20
	tr := newTree(b, map[string]int{"rec.bdf": 64 * bs})
	nodes := cluster(b, tr, 2, func(c *Config) { c.BlockSize = bs })
	key := tr.keys[0]
	var owned []int64
	p := make([]byte, bs)
	for blk := int64(0); blk*bs < key.Size; blk++ {
		if nodes[1].node.ring.owner(key, blk) == nodes[1].addr {
			owned = append(owned, blk)
			if err := (CacheBlocks{nodes[1].cache}).ReadBlock(context.Background(), key, p, blk*bs); err != nil {
				b.Fatal(err)
			}
		}
	}
	return nodes, key, owned
}

// BenchmarkPeerHit is one 1 MiB block fetched from the owner's cache over
// loopback, signed, checked and MACed on both sides.
func BenchmarkPeerHit(b *testing.B) {
	nodes, key, owned := benchBlocks(b)
	p := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for i := range b.N {
		if err := nodes[0].node.fetch(nodes[1].addr, key, owned[i%len(owned)], p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocalHit is the same block read from the node's own cache.
func BenchmarkLocalHit(b *testing.B) {
	nodes, key, owned := benchBlocks(b)
	h, err := nodes[1].cache.OpenFile(key)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	p := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	b.ResetTimer()
	for i := range b.N {
		if _, err := h.ReadAt(context.Background(), p, owned[i%len(owned)]<<20); err != nil {
			b.Fatal(err)
		}
	}
}
