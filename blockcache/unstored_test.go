package blockcache

import (
	"bytes"
	"context"
	"testing"
)

// Two demand fetches that both found room when they started, but only one
// of which fits when they finish: the one refused is served unstored. The
// reader's next read of the same block must not read the source again
// (each such refusal used to cost a whole block's refetch per read).
func TestRefusedBlockServedAgainFromMemory(t *testing.T) {
	const bs = 4096
	src := newSource(map[string]int{"a": bs, "b": bs})
	src.gate, src.entered = make(chan struct{}), make(chan struct{}, 2)
	c := open(t, t.TempDir(), src, Options{MaxBytes: bs, ReadAhead: -1})
	defer c.Close()
	ha, _ := c.OpenFile(key(src, "a"))
	defer ha.Close()
	hb, _ := c.OpenFile(key(src, "b"))
	defer hb.Close()

	half := make([][]byte, 2)
	errs := make(chan error, 2)
	for i, h := range []*Handle{ha, hb} {
		half[i] = make([]byte, bs/2)
		go func() {
			_, err := h.ReadAt(context.Background(), half[i], 0)
			errs <- err
		}()
	}
	waitChan(t, src.entered, "the first fetch to reach the source")
	waitChan(t, src.entered, "the second fetch to reach the source")
	close(src.gate)
	for range 2 {
		if err := waitChan(t, errs, "a read"); err != nil {
			t.Fatal(err)
		}
	}
	if u := c.Stats().UncachedBytesServed; u != bs {
		t.Fatalf("%d bytes served unstored, want one block (%d): the race did not happen", u, bs)
	}
	before := src.bytes.Load()
	for i, h := range []*Handle{ha, hb} {
		rest := make([]byte, bs/2)
		if _, err := h.ReadAt(context.Background(), rest, bs/2); err != nil {
			t.Fatal(err)
		}
		name := []string{"a", "b"}[i]
		if !bytes.Equal(append(half[i], rest...), src.files[name]) {
			t.Fatalf("%s: wrong bytes", name)
		}
	}
	if got := src.bytes.Load() - before; got != 0 {
		t.Errorf("the second halves read %d bytes from the source, want 0", got)
	}
}
