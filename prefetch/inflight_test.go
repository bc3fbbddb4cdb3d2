package prefetch

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
)

// modelSource is a source whose latency per request is base while at
// most knee requests are in flight and grows in proportion beyond: a
// server with knee request slots that queues the rest. Its throughput
// stops growing at knee.
func modelSource(base time.Duration, knee int) func(inFlight int) time.Duration {
	return func(n int) time.Duration {
		if n <= knee {
			return base
		}
		return base * time.Duration(n) / time.Duration(knee)
	}
}

// drive feeds c samples as if Limit() requests were always in flight.
func drive(c *Controller, rtt func(int) time.Duration, samples int) (lo, hi int) {
	lo, hi = 1<<30, 0
	for i := 0; i < samples; i++ {
		c.Sample(rtt(c.Limit()))
		if i > samples/2 {
			lo, hi = min(lo, c.Limit()), max(hi, c.Limit())
		}
	}
	return lo, hi
}

func TestControllerSettlesNearTheKnee(t *testing.T) {
	for _, knee := range []int{8, 24, 100} {
		c := NewController(4, 512)
		lo, hi := drive(c, modelSource(time.Millisecond, knee), 20000)
		// Beyond knee*Tolerance the latency leaves the tolerance band, so
		// the limit must stay within a step of that, and never sink far
		// below the knee, where throughput would be given away.
		top := int(float64(knee)*(Tolerance+0.5)) + 1
		if lo < knee*2/3 || hi > top {
			t.Errorf("knee %d: limit settled in [%d, %d], want within [%d, %d]", knee, lo, hi, knee*2/3, top)
		}
	}
}

func TestControllerGrowsToTheCapWhenLatencyStaysFlat(t *testing.T) {
	c := NewController(4, 64)
	lo, hi := drive(c, modelSource(time.Millisecond, 1<<20), 5000)
	if lo != 64 || hi != 64 {
		t.Errorf("limit in [%d, %d], want 64 (the cap)", lo, hi)
	}
}

func TestControllerLearnsASlowerSource(t *testing.T) {
	c := NewController(4, 256)
	drive(c, modelSource(time.Millisecond, 32), 5000)
	// The source becomes ten times slower for good, with the same slots:
	// that is not overload, and the limit must come back near the knee.
	lo, _ := drive(c, modelSource(10*time.Millisecond, 32), 20000)
	if lo < 32*2/3 {
		t.Errorf("after the source slowed down the limit sank to %d, want at least %d", lo, 32*2/3)
	}
}

func TestControllerStaysInBounds(t *testing.T) {
	c := NewController(16, 16)
	lo, hi := drive(c, modelSource(time.Millisecond, 2), 2000)
	if lo != 16 || hi != 16 {
		t.Errorf("fixed controller moved: [%d, %d]", lo, hi)
	}
	c = NewController(0, 0)
	if c.Limit() != 1 {
		t.Errorf("limit %d, want 1", c.Limit())
	}
}

// gateWarmer blocks every Warm until released and records the most that
// ran at once; it fetches a fixed number of bytes per file.
type gateWarmer struct {
	mu      sync.Mutex
	running int
	most    int
	calls   int
	order   []uint32
	release chan struct{}
}

func (g *gateWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	g.mu.Lock()
	g.running++
	g.calls++
	g.most = max(g.most, g.running)
	g.order = append(g.order, idx)
	g.mu.Unlock()
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return 4096, nil
}

func (g *gateWarmer) snapshot() (running, most, calls int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.most, g.calls
}

func TestPrefetcherNeverExceedsMaxInFlight(t *testing.T) {
	s := flatTree(t, 200)
	g := &gateWarmer{release: make(chan struct{})}
	p := New(s, g, Options{MaxInFlight: 6, MinInFlight: 6})
	defer p.Close()
	p.WarmTrees([]uint32{0})
	waitFor(t, func() bool { r, _, _ := g.snapshot(); return r == 6 })
	for range 200 {
		g.release <- struct{}{}
	}
	waitFor(t, func() bool { return p.Stats().Done == 200 })
	if _, most, calls := g.snapshot(); most > 6 || calls != 200 {
		t.Errorf("%d calls, at most %d at once; want 200 calls, at most 6", calls, most)
	}
	if w := p.Stats().Warm; w == nil || w.Files != 200 || w.Done != 200 {
		t.Errorf("warm progress %+v, want 200 of 200", w)
	}
}

func TestWarmTreesSmallestFirstBehindOpens(t *testing.T) {
	sizes := map[string]int{"tree/big": 9000, "tree/mid": 500, "tree/small": 10, "other/a": 100, "other/b": 100}
	s := sizedTree(t, sizes)
	g := &gateWarmer{release: make(chan struct{})}
	p := New(s, g, Options{MaxInFlight: 1, MinInFlight: 1})
	defer p.Close()
	tree, err := Resolve(s, "tree")
	if err != nil {
		t.Fatal(err)
	}
	p.WarmTrees([]uint32{tree})
	// The first warm fetch is running; an open now must go before the
	// rest of the warm queue.
	waitFor(t, func() bool { _, _, calls := g.snapshot(); return calls == 1 })
	a, _ := Resolve(s, "other/a")
	p.OnOpen(a)
	for range 4 {
		g.release <- struct{}{}
	}
	waitFor(t, func() bool { return p.Stats().Done == 4 })
	var got []string
	for _, idx := range g.order {
		got = append(got, s.Path(idx))
	}
	want := []string{"tree/small", "other/b", "tree/mid", "tree/big"}
	for i := range want {
		if i >= len(got) || got[i] != want[i] {
			t.Fatalf("fetch order %q, want %q", got, want)
		}
	}
}

func TestOnListQueuesSmallFilesOnce(t *testing.T) {
	sizes := map[string]int{"d/a": 10, "d/b": 3000, "d/c": 20}
	s := sizedTree(t, sizes)
	g := &gateWarmer{release: make(chan struct{}, 100)}
	for range 100 {
		g.release <- struct{}{}
	}
	p := New(s, g, Options{MaxInFlight: 1, MinInFlight: 1, ListMaxBytes: 1000})
	defer p.Close()
	d, _ := Resolve(s, "d")
	p.OnList(d)
	p.OnList(d)
	waitFor(t, func() bool { return p.Stats().Done == 2 })
	if _, _, calls := g.snapshot(); calls != 2 {
		t.Errorf("%d fetches, want 2 (the two small files, once)", calls)
	}
	if got := []string{s.Path(g.order[0]), s.Path(g.order[1])}; got[0] != "d/a" || got[1] != "d/c" {
		t.Errorf("order %q, want smallest first", got)
	}
}

func TestResolveRefusesMissingPaths(t *testing.T) {
	s := sizedTree(t, map[string]int{"d/a": 1})
	if _, err := Resolve(s, "d/nope"); err == nil {
		t.Error("Resolve of a missing path succeeded")
	}
	if idx, err := Resolve(s, "."); err != nil || idx != 0 {
		t.Errorf("Resolve(.) = %d, %v", idx, err)
	}
}

func flatTree(t *testing.T, files int) *snapshot.Snapshot { return tree(t, files) }

// sizedTree builds a two-level tree from "dir/name" -> size.
func sizedTree(t *testing.T, sizes map[string]int) *snapshot.Snapshot {
	b := snapshot.NewBuilder()
	byDir := map[string][]snapshot.Entry{}
	ino := uint64(100)
	for p, size := range sizes {
		dir, name, _ := strings.Cut(p, "/")
		ino++
		byDir[dir] = append(byDir[dir], snapshot.Entry{Name: name, Dir: snapshot.NoDir,
			Attr: snapshot.Attr{Mode: snapshot.ModeReg | 0o644, Size: int64(size), Ino: ino}})
	}
	var root []snapshot.Entry
	for dir, es := range byDir {
		slices.SortFunc(es, func(a, b snapshot.Entry) int { return strings.Compare(a.Name, b.Name) })
		d := b.NewDir()
		b.SetDir(d, es)
		ino++
		root = append(root, snapshot.Entry{Name: dir, Dir: d, Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: ino}})
	}
	slices.SortFunc(root, func(a, b snapshot.Entry) int { return strings.Compare(a.Name, b.Name) })
	b.SetDir(0, root)
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond; the deadline only catches a hang.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestControllerClimbsWhileThroughputGrows: a source whose latency rises
// with concurrency, but less than in proportion (a loaded machine, not a
// full server), still gains from more in flight, and the limit climbs to
// the cap.
func TestControllerClimbsWhileThroughputGrows(t *testing.T) {
	c := NewController(4, 128)
	sublinear := func(n int) time.Duration {
		return time.Duration(float64(time.Millisecond) * math.Pow(float64(n)/4, 0.5))
	}
	if lo, _ := drive(c, sublinear, 20000); lo < 64 {
		t.Errorf("limit sank to %d with throughput still growing, want at least 64", lo)
	}
}
