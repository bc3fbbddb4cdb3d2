package blockcache

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// lockedBuffer collects log lines written from any goroutine.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestDiskFailureStopsStoringForAWhile: after a cache disk error, reads go
// on from the source without storing, the failure is logged once however
// often it recurs, and storing resumes once degradedFor has passed on the
// cache's clock.
func TestDiskFailureStopsStoringForAWhile(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 4})
	var logs lockedBuffer
	c, err := Open(Options{Dir: t.TempDir(), BlockSize: 4096, ReadAhead: -1, Logger: zerolog.New(&logs)}, src)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WaitScan()
	var clockMu sync.Mutex
	now := time.Unix(1_000_000_000, 0)
	c.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	advance := func(d time.Duration) { clockMu.Lock(); now = now.Add(d); clockMu.Unlock() }

	h, err := c.OpenFile(key(src, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	reads := func(when string, want int64) {
		t.Helper()
		p := make([]byte, 100)
		if _, err := h.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files["a"][:100]) {
			t.Fatalf("%s: read: %v", when, err)
		}
		if got := src.reads.Load(); got != want {
			t.Errorf("%s: %d source reads in all, want %d", when, got, want)
		}
	}
	const failed = "cache disk failed"
	c.degrade(errors.New("test: the cache disk fails"))
	c.degrade(errors.New("test: the cache disk fails again"))
	reads("degraded", 1)
	reads("degraded, read again: nothing was stored", 2)
	advance(degradedFor - time.Second)
	reads("just before the episode ends", 3)
	if n := logs.count(failed); n != 1 {
		t.Errorf("%q logged %d times in one episode, want once", failed, n)
	}
	advance(2 * time.Second)
	reads("after the episode: stored", 4)
	reads("after the episode: served from the cache", 4)
	c.degrade(errors.New("test: the cache disk fails later"))
	if n := logs.count(failed); n != 2 {
		t.Errorf("%q logged %d times after a second episode, want twice", failed, n)
	}
}
