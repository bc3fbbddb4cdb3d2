package blockcache

import (
	"bytes"
	"context"
	"testing"
)

// The idle table can hand back a state that is not its file's latest. A
// reader that opens a file while the Set of its released state is still
// buffered finds nothing idle and makes a second state; ristretto then
// drops that state's own Set (the name is already there) or takes the
// first one's after it. The state that comes back must not serve its old
// bitmap as the truth: blocks the other state stored would be read from
// the source again.
func TestStaleIdleStateSeesBlocksStoredSince(t *testing.T) {
	src := newSource(map[string]int{"a": 4 * 4096})
	c := open(t, t.TempDir(), src, Options{ReadAhead: -1})
	defer c.Close()
	k := key(src, "a")
	read := func(b int64) {
		t.Helper()
		h, err := c.OpenFile(k)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		p := make([]byte, 4096)
		if _, err := h.ReadAt(context.Background(), p, b*4096); err != nil || !bytes.Equal(p, src.files["a"][b*4096:(b+1)*4096]) {
			t.Fatalf("block %d: %v", b, err)
		}
	}
	read(0)
	c.idle.Wait()
	first, ok := c.idle.Get(k.name())
	if !ok {
		t.Fatal("a released state is not in the idle table")
	}
	// The open that raced the first state's Set: nothing idle yet.
	c.idle.Del(k.name())
	c.idle.Wait()
	read(1)
	c.idle.Wait()
	// The first state's Set lands last.
	c.idle.Set(k.name(), first, first.cost())
	c.idle.Wait()
	if got, _ := c.idle.Get(k.name()); got != first {
		t.Fatal("the idle table does not hold the first state")
	}
	before := src.reads.Load()
	read(1)
	if n := src.reads.Load() - before; n != 0 {
		t.Errorf("a block stored by the file's other state was read from the source %d more times", n)
	}
}
