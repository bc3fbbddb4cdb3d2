package blockcache

import (
	"context"
	"testing"

	"github.com/rs/zerolog"
)

// benchCached opens a cache over an 8 MiB file of 1 MiB blocks, all
// stored, through one handle.
func benchCached(b *testing.B) (*Cache, *Handle) {
	src := newSource(map[string]int{"a": 8 << 20})
	c, err := Open(Options{Dir: b.TempDir(), Logger: zerolog.Nop(), ReadAhead: -1}, src)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Warm(context.Background(), key(src, "a")); err != nil {
		b.Fatal(err)
	}
	h, _ := c.OpenFile(key(src, "a"))
	b.Cleanup(func() { h.Close(); c.Close() })
	return c, h
}

// uncheck forgets that block n was checked, as a new process would.
func (h *Handle) uncheck(n int64) {
	st := h.st
	st.mu.Lock()
	if st.checked.has(n) {
		st.checked[n/64] &^= 1 << (n % 64)
		st.nChecked--
	}
	st.mu.Unlock()
}

// BenchmarkFirstHit is a 128 KiB read of a stored block this process has
// not read back yet: the block is read whole from the cache disk's page
// cache and its CRC-32C checked. It happens once per block and process;
// BenchmarkHit is every later read.
func BenchmarkFirstHit(b *testing.B) {
	_, h := benchCached(b)
	p := make([]byte, 128<<10)
	b.SetBytes(128 << 10)
	i := int64(0)
	for b.Loop() {
		n := i % 8
		h.uncheck(n)
		if _, err := h.ReadAt(context.Background(), p, n<<20); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkCachedFd is the splice path's cost per request beyond the
// splice itself: checked bits and one fstat of the data file for its
// length.
func BenchmarkCachedFd(b *testing.B) {
	_, h := benchCached(b)
	p := make([]byte, 8<<20)
	h.ReadAt(context.Background(), p, 0) // check every block once
	i := int64(0)
	for b.Loop() {
		if _, ok := h.CachedFd((i%64)*(128<<10), 128<<10); !ok {
			b.Fatal("no descriptor for a stored range")
		}
		i++
	}
}
