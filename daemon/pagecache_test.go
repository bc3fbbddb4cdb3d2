package daemon

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// refusingKernel stands for a kernel that has not made the inode yet: it
// refuses the first refusals stores, as fuse_notify_store does with
// ENOENT until the thread that sent the LOOKUP has taken the reply.
type refusingKernel struct {
	mu       sync.Mutex
	refusals int
	attempts int
	stored   chan []byte
}

func (k *refusingKernel) StoreCache(idx uint32, data []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.attempts++
	if k.attempts <= k.refusals {
		return false
	}
	k.stored <- append([]byte(nil), data...)
	return true
}

// cachedSmallFile is a snapshot of a source holding one small file, with
// a block cache that holds that file whole.
func cachedSmallFile(t *testing.T, data []byte) (cacheContent, uint32) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	snap, err := snapshot.Walk(context.Background(), src, snapshot.WalkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		t.Fatal(err)
	}
	source, err := blockcache.NewDirSource(src, st.Dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = source.Close() })
	cache, err := blockcache.Open(blockcache.Options{Dir: filepath.Join(t.TempDir(), "cache"), BlockSize: pageCacheMax, Logger: zerolog.Nop()}, source)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cache.Close() })
	c := cacheContent{snap: snap, cache: cache}
	idx, ok := snap.Lookup(0, "f")
	if !ok {
		t.Fatal("f is not in the snapshot")
	}
	if _, err := c.warm(context.Background(), idx); err != nil {
		t.Fatal(err)
	}
	return c, idx
}

// TestLookupHandOverOutlastsRefusals: a hand-over asked for by a lookup
// that the kernel refuses, because it has not made the inode yet, is tried
// again until the kernel takes it; no second lookup would come to ask.
func TestLookupHandOverOutlastsRefusals(t *testing.T) {
	data := bytes.Repeat([]byte("sidecar "), 500)
	c, idx := cachedSmallFile(t, data)
	p := newPageCache(zerolog.Nop(), c, pageCacheMax)
	k := &refusingKernel{refusals: lookupTries - 1, stored: make(chan []byte, 1)}
	p.start(k)
	defer p.close()
	p.fetched[idx/64].Or(1 << (idx % 64))
	p.onLookup(idx)
	select {
	case got := <-k.stored:
		if !bytes.Equal(got, data) {
			t.Fatalf("the kernel was handed %d bytes that are not the file's %d", len(got), len(data))
		}
	case <-time.After(30 * time.Second): // only a hang
		k.mu.Lock()
		defer k.mu.Unlock()
		t.Fatalf("the kernel refused %d hand-overs and was never asked again", k.attempts)
	}
	// The fake kernel answers before store marks the file: wait for the
	// mark, with a deadline that only catches its absence.
	for deadline := time.Now().Add(30 * time.Second); p.pushed[idx/64].Load()&(1<<(idx%64)) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a file the kernel took is not marked handed over")
		}
	}
}
