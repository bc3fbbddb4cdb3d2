package peer

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"testing"
	"time"

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

// BenchmarkResponseMAC is the owner's MAC of one 1 MiB block as sent
// (GMAC), beside the HMAC-SHA256 of the same bytes it replaced and the
// CRC-32C both sides compute too.
func BenchmarkResponseMAC(b *testing.B) {
	body := make([]byte, 1<<20)
	s := signer{testSecret}
	_, _, req := s.request("p=f&b=0", time.Now())
	run := func(name string, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for range b.N {
				f()
			}
		})
	}
	run("gmac", func() { s.response(req, "00000000", body) })
	run("hmac-sha256", func() {
		h := hmac.New(sha256.New, testSecret)
		h.Write(body)
		h.Sum(nil)
	})
	run("crc32c", func() { crc32.Checksum(body, castagnoli) })
}

// BenchmarkPeerHitSmall is a peer hit on a 4 KiB file, one block: what a
// request costs beside its bytes.
func BenchmarkPeerHitSmall(b *testing.B) {
	sizes := map[string]int{}
	for i := range 256 {
		sizes[fmt.Sprintf("img_%03d.png", i)] = 4 << 10
	}
	tr := newTree(b, sizes)
	nodes := cluster(b, tr, 2, nil)
	var owned []blockcache.Key
	p := make([]byte, 4<<10)
	for _, k := range tr.keys {
		if nodes[1].node.ring.owner(k, 0) == nodes[1].addr {
			owned = append(owned, k)
			if err := (CacheBlocks{nodes[1].cache}).ReadBlock(context.Background(), k, p, 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.SetBytes(4 << 10)
	b.ResetTimer()
	for i := range b.N {
		if err := nodes[0].node.fetch(nodes[1].addr, owned[i%len(owned)], 0, p); err != nil {
			b.Fatal(err)
		}
	}
}
