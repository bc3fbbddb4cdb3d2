package fusefs

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeReader struct {
	idx    uint32
	closed atomic.Bool
}

func (r *fakeReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if r.closed.Load() {
		panic("read through a closed Reader")
	}
	return len(p), nil
}

func (r *fakeReader) Close() error {
	if r.closed.Swap(true) {
		panic("Reader closed twice")
	}
	return nil
}

type heldFixture struct {
	mu     sync.Mutex
	opened []*fakeReader
	heard  []uint32
	h      *heldReaders
}

func newHeldFixture(idle time.Duration, max int) *heldFixture {
	f := &heldFixture{}
	f.h = newHeldReaders(func(idx uint32) (Reader, error) {
		r := &fakeReader{idx: idx}
		f.mu.Lock()
		f.opened = append(f.opened, r)
		f.mu.Unlock()
		return r, nil
	}, func(idx uint32) {
		f.mu.Lock()
		f.heard = append(f.heard, idx)
		f.mu.Unlock()
	}, func(idx uint32, r Reader) { r.Close() }, idle, max)
	return f
}

func (f *heldFixture) closedCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.opened {
		if r.closed.Load() {
			n++
		}
	}
	return n
}

func TestHeldOneReaderPerFile(t *testing.T) {
	f := newHeldFixture(time.Hour, 10)
	defer f.h.close()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, err := f.h.acquire(7)
			if err != nil {
				t.Error(err)
				return
			}
			e.r.ReadAt(context.Background(), make([]byte, 1), 0)
			f.h.release(e)
		}()
	}
	wg.Wait()
	if n := f.h.count(); n != 1 {
		t.Fatalf("%d Readers held for one file, want 1", n)
	}
	// Racing first reads may open extras, but each is closed at once and
	// only the kept one is announced.
	if len(f.heard) != 1 || f.closedCount() != len(f.opened)-1 {
		t.Fatalf("heard %v, %d opened, %d closed", f.heard, len(f.opened), f.closedCount())
	}
}

func TestHeldCapSparesReadersInUse(t *testing.T) {
	f := newHeldFixture(time.Hour, 2)
	defer f.h.close()
	busy, _ := f.h.acquire(1) // stays referenced
	e2, _ := f.h.acquire(2)
	f.h.release(e2)
	e3, _ := f.h.acquire(3)
	f.h.release(e3)
	// Over the cap: the idle one (2) goes, never the busy one.
	if f.h.count() != 2 || !f.opened[1].closed.Load() || f.opened[0].closed.Load() {
		t.Fatalf("after exceeding the cap: %d held, closed 1:%v 2:%v", f.h.count(), f.opened[0].closed.Load(), f.opened[1].closed.Load())
	}
	busy.r.ReadAt(context.Background(), make([]byte, 1), 0)
	f.h.release(busy)
}

func TestHeldIdleReadersAreGivenBack(t *testing.T) {
	f := newHeldFixture(40*time.Millisecond, 10)
	defer f.h.close()
	busy, _ := f.h.acquire(1)
	idle, _ := f.h.acquire(2)
	f.h.release(idle)
	deadline := time.Now().Add(5 * time.Second)
	for f.h.count() > 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.h.count() != 1 || !f.opened[1].closed.Load() || f.opened[0].closed.Load() {
		t.Fatalf("idle Reader kept or busy one closed: %d held", f.h.count())
	}
	// A spliced reply still holds its reference: not reaped until Done.
	res := &splicedResult{done: func() { f.h.release(busy) }}
	// A probe released after the busy one is given back: the reaper has
	// then passed over the busy one, which it would have closed first had
	// it counted as idle.
	probe, _ := f.h.acquire(3)
	f.h.release(probe)
	for !f.opened[2].closed.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !f.opened[2].closed.Load() {
		t.Fatal("idle probe Reader never given back")
	}
	if f.opened[0].closed.Load() {
		t.Fatal("a Reader with a reply in flight was closed")
	}
	res.Done()
	res.Done() // go-fuse calls it once; a second call must not release twice
	for f.h.count() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.h.count() != 0 {
		t.Fatal("Reader not given back after its reply was done")
	}
	// A file read again after being given back gets a new Reader and is
	// announced again, as a new open would be.
	e, _ := f.h.acquire(1)
	f.h.release(e)
	if len(f.heard) != 4 || f.heard[3] != 1 {
		t.Fatalf("heard %v, want 1, 2, 3, 1", f.heard)
	}
}

func TestHeldCloseGivesEverythingBack(t *testing.T) {
	f := newHeldFixture(time.Hour, 10)
	for i := uint32(0); i < 5; i++ {
		e, _ := f.h.acquire(i)
		f.h.release(e)
	}
	f.h.close()
	if f.closedCount() != 5 {
		t.Fatalf("%d of 5 Readers closed at unmount", f.closedCount())
	}
}

type crowdedFake struct {
	fakeReader
	crowded *atomic.Bool
	asked   *atomic.Int32 // how often the reaper asked
}

func (r *crowdedFake) Crowded() bool {
	r.asked.Add(1)
	return r.crowded.Load()
}

// TestHeldCrowdedReadersGoBackSoon: while the content says its budget is
// taken by held files, a file no read has touched for the short crowded
// idle time is given back, though the ordinary idle time is far off; an
// uncrowded content keeps it.
func TestHeldCrowdedReadersGoBackSoon(t *testing.T) {
	var isCrowded atomic.Bool
	var asked atomic.Int32
	var mu sync.Mutex
	var opened []*crowdedFake
	h := newHeldReadersCrowded(func(idx uint32) (Reader, error) {
		r := &crowdedFake{fakeReader: fakeReader{idx: idx}, crowded: &isCrowded, asked: &asked}
		mu.Lock()
		opened = append(opened, r)
		mu.Unlock()
		return r, nil
	}, nil, func(idx uint32, r Reader) { r.Close() }, time.Hour, 20*time.Millisecond, 10)
	defer h.close()
	e, _ := h.acquire(1)
	h.release(e)
	// The reaper asks once the file has been idle for the crowded idle
	// time; a second question means the pass after the first answer has
	// run to its end.
	deadline := time.Now().Add(10 * time.Second)
	for asked.Load() < 2 && h.count() == 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.count() != 1 {
		t.Fatal("a file was given back before its idle time although nothing is crowded")
	}
	if asked.Load() < 2 {
		t.Fatal("the reaper never asked whether the content is crowded")
	}
	isCrowded.Store(true)
	deadline = time.Now().Add(10 * time.Second)
	for h.count() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.count() != 0 || !opened[0].closed.Load() {
		t.Fatal("a crowded content's unread file was not given back")
	}
}
