package prefetch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cachefs/cachefs/snapshot"
)

type fakeWarmer struct {
	mu     sync.Mutex
	warmed []string
	snap   *snapshot.Snapshot
	room   int // files that fit; -1 unlimited
}

func (f *fakeWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.room == 0 {
		return 0, fmt.Errorf("warm: %w", ErrNoRoom)
	}
	f.room--
	f.warmed = append(f.warmed, f.snap.Name(idx))
	return f.snap.Attr(idx).Size, nil
}

func tree(t *testing.T, files int) *snapshot.Snapshot {
	var names []string
	for i := 0; i < files; i++ {
		names = append(names, fmt.Sprintf("f%03d", i))
	}
	return namedTree(t, names, snapshot.Entry{Name: "sub", Dir: snapshot.NoDir, Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 5}})
}

func settle(t *testing.T, p *Prefetcher) Stats {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := p.Stats()
		if st.Queued == 0 && st.Running == 0 {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch never settled: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSiblingsInNameOrderFromTheOpenedFile(t *testing.T) {
	s := tree(t, 10)
	w := &fakeWarmer{snap: s, room: -1}
	p := New(s, w, Options{Workers: 1})
	defer p.Close()
	d, _ := s.Lookup(0, "d")
	f5, _ := s.Lookup(d, "f005")
	p.OnOpen(f5)
	p.OnOpen(f5 + 1) // same directory: queued once
	st := settle(t, p)
	want := []string{"f006", "f007", "f008", "f009", "f000", "f001", "f002", "f003", "f004"}
	if fmt.Sprint(w.warmed) != fmt.Sprint(want) || st.Done != 9 || st.Bytes != 900 {
		t.Errorf("warmed %v (stats %+v), want %v", w.warmed, st, want)
	}
}

func TestPerDirLimitAndNoRoom(t *testing.T) {
	s := tree(t, 50)
	d, _ := s.Lookup(0, "d")
	lo, _ := s.Children(d)
	block := make(chan struct{})
	w := &blockingWarmer{fakeWarmer{snap: s, room: -1}, block}
	p := New(s, w, Options{Workers: 1, PerDir: 6})
	p.OnOpen(lo + 40)
	// One file is taken by the worker (blocked), five wait: no top-up
	// while more than half the window is still queued.
	waitTaken(t, p)
	p.OnOpen(lo + 41)
	if st := p.Stats(); st.Queued != 5 {
		t.Errorf("queued %d after a second open with a full window", st.Queued)
	}
	close(block)
	settle(t, p)
	if len(w.warmed) != 6 {
		t.Errorf("warmed %d files with PerDir 6", len(w.warmed))
	}
	// Later opens top up, continuing in name order and wrapping round to
	// the files before the first one opened, until all are done.
	for i := 0; i < 20; i++ {
		p.OnOpen(lo + uint32(i))
		settle(t, p)
	}
	// Everything but the two files opened before prefetch reached them.
	if len(w.warmed) != 48 {
		t.Errorf("warmed %d of the directory's 50 files, want 48", len(w.warmed))
	}
	seen := map[string]bool{}
	for _, n := range w.warmed {
		if seen[n] {
			t.Errorf("%s warmed twice", n)
		}
		seen[n] = true
	}
	if w.warmed[0] != "f041" || w.warmed[9] != "f001" {
		t.Errorf("order %v: want f041.. then wrap to f001", w.warmed)
	}
	p.Close()

	w2 := &fakeWarmer{snap: s, room: 3}
	p = New(s, w2, Options{Workers: 1})
	defer p.Close()
	p.OnOpen(lo)
	st := settle(t, p)
	if len(w2.warmed) != 3 || st.Stopped != 1 {
		t.Errorf("with room for 3: warmed %d, stats %+v", len(w2.warmed), st)
	}
}

// TestQueuedAgainAfterBudgetStop: the file the budget stopped, and the
// ones dropped with the queue, are queued again by a later open once there
// is room.
func TestQueuedAgainAfterBudgetStop(t *testing.T) {
	s := tree(t, 10)
	d, _ := s.Lookup(0, "d")
	lo, _ := s.Children(d)
	w := &fakeWarmer{snap: s, room: 3}
	p := New(s, w, Options{Workers: 1})
	defer p.Close()
	p.OnOpen(lo)
	if st := settle(t, p); st.Stopped != 1 || fmt.Sprint(w.warmed) != "[f001 f002 f003]" {
		t.Fatalf("with room for 3: warmed %v, stats %+v", w.warmed, st)
	}
	w.mu.Lock()
	w.room, w.warmed = -1, nil
	w.mu.Unlock()
	p.OnOpen(lo + 1)
	settle(t, p)
	want := "[f002 f003 f004 f005 f006 f007 f008 f009 f000]"
	if fmt.Sprint(w.warmed) != want {
		t.Errorf("after room was made: warmed %v, want %s", w.warmed, want)
	}
}

type blockingWarmer struct {
	fakeWarmer
	block chan struct{}
}

func (b *blockingWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	<-b.block
	return b.fakeWarmer.Warm(ctx, idx)
}

func waitTaken(t *testing.T, p *Prefetcher) {
	deadline := time.Now().Add(5 * time.Second)
	for p.Stats().Running == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no worker took a file")
		}
		time.Sleep(time.Millisecond)
	}
}

// busyWarmer answers ErrBusy for large files until released.
type busyWarmer struct {
	fakeWarmer
	busy  sync.Mutex // held while large files are held back
	large int64
	asked map[string]int
}

func (b *busyWarmer) Warm(ctx context.Context, idx uint32) (int64, error) {
	if b.snap.Attr(idx).Size >= b.large {
		if !b.busy.TryLock() {
			b.fakeWarmer.mu.Lock()
			b.asked[b.snap.Name(idx)]++
			b.fakeWarmer.mu.Unlock()
			return 0, fmt.Errorf("warm: %w", ErrBusy)
		}
		b.busy.Unlock()
	}
	return b.fakeWarmer.Warm(ctx, idx)
}

// TestBusyFileDoesNotHoldTheQueue: with one worker, large files that must
// wait for demand reads are put back, the small files behind them are
// fetched meanwhile, and the large ones are fetched once let through.
func TestBusyFileDoesNotHoldTheQueue(t *testing.T) {
	b := snapshot.NewBuilder()
	d := b.NewDir()
	var es []snapshot.Entry
	for i := 0; i < 8; i++ {
		size := int64(100)
		if i%4 == 1 {
			size = 1 << 20 // f001, f005
		}
		es = append(es, snapshot.Entry{Name: fmt.Sprintf("f%03d", i), Dir: snapshot.NoDir,
			Attr: snapshot.Attr{Mode: snapshot.ModeReg | 0o644, Size: size, Ino: uint64(10 + i)}})
	}
	b.SetDir(d, es)
	b.SetDir(0, []snapshot.Entry{{Name: "d", Dir: d, Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 2}}})
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	w := &busyWarmer{fakeWarmer: fakeWarmer{snap: s, room: -1}, large: 1 << 20, asked: map[string]int{}}
	w.busy.Lock()
	p := New(s, w, Options{Workers: 1})
	defer p.Close()
	dd, _ := s.Lookup(0, "d")
	lo, _ := s.Children(dd)
	p.OnOpen(lo) // queues f001..f007
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.fakeWarmer.mu.Lock()
		n := len(w.warmed)
		w.fakeWarmer.mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("small files behind busy ones not fetched: %v", w.warmed)
		}
		time.Sleep(time.Millisecond)
	}
	if st := p.Stats(); st.Queued+st.Running != 2 {
		t.Errorf("the two busy files should still be queued: %+v", st)
	}
	w.busy.Unlock()
	st := settle(t, p)
	if st.Done != 7 || len(w.warmed) != 7 {
		t.Errorf("after the demand reads end: %+v, warmed %v", st, w.warmed)
	}
	if w.asked["f001"] == 0 || w.asked["f005"] == 0 {
		t.Errorf("busy answers: %v", w.asked)
	}
}

// namedTree is one directory d holding regular files of 100 bytes with
// the given names (given in name order), then the extra entries.
func namedTree(t *testing.T, names []string, extra ...snapshot.Entry) *snapshot.Snapshot {
	b := snapshot.NewBuilder()
	d := b.NewDir()
	var es []snapshot.Entry
	for i, n := range names {
		es = append(es, snapshot.Entry{Name: n, Dir: snapshot.NoDir,
			Attr: snapshot.Attr{Mode: snapshot.ModeReg | 0o644, Size: 100, Ino: uint64(10 + i)}})
	}
	b.SetDir(d, append(es, extra...))
	b.SetDir(0, []snapshot.Entry{{Name: "d", Dir: d, Attr: snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 2}}})
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestOpenPrefetchesFilesOfTheSameKind: opening one module's bytecode
// fetches the other bytecode files beside it, not the sources, data and
// extension-less files that the job never asked for; opening a file of
// another kind there starts a window of its own.
func TestOpenPrefetchesFilesOfTheSameKind(t *testing.T) {
	s := namedTree(t, []string{"LICENSE", "a.cpython-311.pyc", "a.py", "b.cpython-311.pyc", "b.py", "c.cpython-311.pyc", "data.json", "e.pyc"})
	w := &fakeWarmer{snap: s, room: -1}
	p := New(s, w, Options{Workers: 1})
	defer p.Close()
	d, _ := s.Lookup(0, "d")
	b, _ := s.Lookup(d, "b.cpython-311.pyc")
	p.OnOpen(b)
	settle(t, p)
	if want := "[c.cpython-311.pyc e.pyc a.cpython-311.pyc]"; fmt.Sprint(w.warmed) != want {
		t.Errorf("after opening %s: warmed %v, want %s", s.Name(b), w.warmed, want)
	}
	ap, _ := s.Lookup(d, "a.py")
	p.OnOpen(ap)
	settle(t, p)
	if want := "[c.cpython-311.pyc e.pyc a.cpython-311.pyc b.py]"; fmt.Sprint(w.warmed) != want {
		t.Errorf("after opening a.py: warmed %v, want %s", w.warmed, want)
	}
}

// TestListingQueuesOnlyLargeDirectories: a listing queues a directory's
// files only when the directory has ListMinEntries entries or more; a short
// listing (an import path being searched) queues nothing.
func TestListingQueuesOnlyLargeDirectories(t *testing.T) {
	// d holds 9 files and a subdirectory: 10 entries.
	for _, tc := range []struct{ min, want int }{{11, 0}, {10, 9}, {0, 9}} {
		s := tree(t, 9)
		w := &fakeWarmer{snap: s, room: -1}
		p := New(s, w, Options{Workers: 1, ListMaxBytes: 1 << 20, ListMinEntries: tc.min})
		d, _ := s.Lookup(0, "d")
		p.OnList(d)
		st := settle(t, p)
		p.Close()
		if len(w.warmed) != tc.want {
			t.Errorf("10 entries, at least %d wanted: %d files fetched (%+v), want %d", tc.min, len(w.warmed), st, tc.want)
		}
	}
}
