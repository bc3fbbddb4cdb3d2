package blockcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// memSource serves byte slices and counts reads.
type memSource struct {
	files map[string][]byte
	reads atomic.Int64
	bytes atomic.Int64
	open  atomic.Int64 // source files open now
	fail  atomic.Bool  // report every file as changed
	// gate, when set, holds every read until it is closed; entered
	// gets a value as each read arrives.
	gate, entered chan struct{}
}

type memFile struct {
	s *memSource
	b []byte
}

func (m *memSource) Open(k Key) (SourceFile, error) {
	b, ok := m.files[k.Path]
	if !ok || m.fail.Load() || int64(len(b)) != k.Size {
		return nil, ErrChanged
	}
	m.open.Add(1)
	return &memFile{m, b}, nil
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.s.reads.Add(1)
	if f.s.gate != nil {
		f.s.entered <- struct{}{}
		<-f.s.gate
	}
	n := copy(p, f.b[off:])
	f.s.bytes.Add(int64(n))
	return n, nil
}

func (f *memFile) Close() error {
	f.s.open.Add(-1)
	return nil
}

func newSource(sizes map[string]int) *memSource {
	m := &memSource{files: map[string][]byte{}}
	r := rand.New(rand.NewSource(1))
	for name, n := range sizes {
		b := make([]byte, n)
		r.Read(b)
		m.files[name] = b
	}
	return m
}

func key(m *memSource, name string) Key {
	return Key{Path: name, Ino: 1, Size: int64(len(m.files[name])), Mtime: 7}
}

func open(t *testing.T, dir string, src Source, opts Options) *Cache {
	t.Helper()
	opts.Dir = dir
	opts.Logger = zerolog.Nop()
	if opts.BlockSize == 0 {
		opts.BlockSize = 4096
	}
	c, err := Open(opts, src)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReadRangesAndReuse(t *testing.T) {
	src := newSource(map[string]int{"a": 4096*10 + 123, "b": 4096})
	dir := t.TempDir()
	c := open(t, dir, src, Options{ReadAhead: -1})
	h, _ := c.OpenFile(key(src, "a"))
	want := src.files["a"]
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 300; i++ {
		off := r.Int63n(int64(len(want)) + 100)
		n := r.Intn(9000)
		p := make([]byte, n)
		got, err := h.ReadAt(context.Background(), p, off)
		if err != nil {
			t.Fatal(err)
		}
		exp := want[min(off, int64(len(want))):min(off+int64(n), int64(len(want)))]
		if !bytes.Equal(p[:got], exp) {
			t.Fatalf("read %d@%d: mismatch", n, off)
		}
	}
	if got := src.bytes.Load(); got != int64(len(want)) {
		t.Errorf("source served %d bytes for a %d-byte file: blocks fetched twice?", got, len(want))
	}
	h.Close()
	c.Close()

	// A new process over the same directory reuses every block.
	src.bytes.Store(0)
	c = open(t, dir, src, Options{})
	defer c.Close()
	h, _ = c.OpenFile(key(src, "a"))
	p := make([]byte, len(want))
	if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(want) || !bytes.Equal(p, want) {
		t.Fatalf("after reopen: %d %v", n, err)
	}
	if fd, ok := h.PassthroughFd(); !ok || fd <= 0 {
		t.Error("a complete file is not offered for passthrough")
	}
	if src.bytes.Load() != 0 {
		t.Errorf("reopened cache fetched %d bytes again", src.bytes.Load())
	}
	h.Close()
}

// TestOneSourceReadPerBlock: 16 readers of one block, all waiting for it
// at once (the source's read is held until every one of them waits in
// fetch), cause one source read.
func TestOneSourceReadPerBlock(t *testing.T) {
	const readers = 16
	src := newSource(map[string]int{"a": 4096})
	src.gate, src.entered = make(chan struct{}), make(chan struct{}, readers)
	c := open(t, t.TempDir(), src, Options{})
	defer c.Close()
	var wg sync.WaitGroup
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := c.OpenFile(key(src, "a"))
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			defer h.Close()
			p := make([]byte, 100)
			if _, err := h.ReadAt(context.Background(), p, 10); err != nil || !bytes.Equal(p, src.files["a"][10:110]) {
				t.Errorf("read: %v", err)
			}
		}()
	}
	waitChan(t, src.entered, "the fetch to reach the source")
	waitGoroutinesIn(t, "blockcache.(*fileState).fetch(", readers)
	close(src.gate)
	wg.Wait()
	if n := src.reads.Load(); n != 1 {
		t.Errorf("%d readers waiting for one block at once caused %d source reads", readers, n)
	}
}

// waitGoroutinesIn waits until n goroutines have fn on their stack: the
// only way to know, from outside, that they all wait there.
func waitGoroutinesIn(t *testing.T, fn string, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	buf := make([]byte, 1<<20)
	for {
		got := strings.Count(string(buf[:runtime.Stack(buf, true)]), fn)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %d goroutines in %s; %d are", n, fn, got)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCancelledReaderDoesNotCancelFetch(t *testing.T) {
	src := newSource(map[string]int{"a": 4096})
	src.gate, src.entered = make(chan struct{}), make(chan struct{}, 4)
	c := open(t, t.TempDir(), src, Options{})
	defer c.Close()
	h, _ := c.OpenFile(key(src, "a"))
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.ReadAt(ctx, make([]byte, 10), 0)
		done <- err
	}()
	waitChan(t, src.entered, "the fetch to reach the source")
	h2, _ := c.OpenFile(key(src, "a"))
	defer h2.Close()
	waiter := make(chan error, 1)
	p := make([]byte, 10)
	go func() {
		_, err := h2.ReadAt(context.Background(), p, 0)
		waiter <- err
	}()
	// The fetch is held at the source: the cancelled reader can only
	// return by noticing its cancellation.
	cancel()
	if err := waitChan(t, done, "the cancelled reader"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled reader: %v, want context.Canceled", err)
	}
	close(src.gate)
	if err := waitChan(t, waiter, "the waiting reader"); err != nil || !bytes.Equal(p, src.files["a"][:10]) {
		t.Fatalf("waiting reader failed after the other gave up: %v", err)
	}
	if src.reads.Load() != 1 {
		t.Errorf("%d source reads", src.reads.Load())
	}
}

// waitChan receives from ch, failing the test if nothing comes for far
// longer than any healthy wait: a hang.
func waitChan[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("waited a minute for %s", what)
		panic("unreachable")
	}
}

func TestTornPresenceLog(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 4})
	dir := t.TempDir()
	c := open(t, dir, src, Options{ReadAhead: -1})
	h, _ := c.OpenFile(key(src, "a"))
	h.ReadAt(context.Background(), make([]byte, 4096*2), 0)
	h.Close()
	c.Close()
	// A crash mid-append leaves half a record, or garbage.
	logs, _ := filepath.Glob(filepath.Join(dir, "blocks", "*", "*.present"))
	if len(logs) != 1 {
		t.Fatalf("logs: %v", logs)
	}
	f, err := os.OpenFile(logs[0], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{3, 0, 0, 0, 9, 9, 9, 9, 1, 2, 3, 4, 5, 6}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	src.bytes.Store(0)
	c = open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	h, _ = c.OpenFile(key(src, "a"))
	defer h.Close()
	p := make([]byte, 4096*4)
	if _, err := h.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files["a"]) {
		t.Fatalf("read after torn log: %v", err)
	}
	if got := src.bytes.Load(); got != 4096*2 {
		t.Errorf("fetched %d bytes, want the 2 blocks that were never recorded", got)
	}
}

func TestChangedSourceKeepsCachedBlocks(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 3})
	c := open(t, t.TempDir(), src, Options{ReadAhead: -1})
	defer c.Close()
	h, _ := c.OpenFile(key(src, "a"))
	h.ReadAt(context.Background(), make([]byte, 10), 0)
	h.Close()
	src.fail.Store(true)
	h, _ = c.OpenFile(key(src, "a"))
	defer h.Close()
	p := make([]byte, 10)
	if _, err := h.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files["a"][:10]) {
		t.Errorf("cached block of the matching version: %v", err)
	}
	if _, err := h.ReadAt(context.Background(), p, 4096*2); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("uncached block of a changed file: %v, want ErrChanged", err)
	}
}

func TestBudgetEvictsLeastRecentlyUsed(t *testing.T) {
	sizes := map[string]int{}
	for i := 0; i < 8; i++ {
		sizes[string(rune('a'+i))] = 4096 * 4
	}
	src := newSource(sizes)
	dir := t.TempDir()
	c := open(t, dir, src, Options{MaxBytes: 4096 * 4 * 3, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	for i := 0; i < 8; i++ {
		name := string(rune('a' + i))
		h, _ := c.OpenFile(key(src, name))
		p := make([]byte, 4096*4)
		if _, err := h.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files[name]) {
			t.Fatalf("%s: %v", name, err)
		}
		h.Close()
		if u := c.Stats().Usage; u > 4096*4*3 {
			t.Fatalf("usage %d over budget", u)
		}
	}
	st := c.Stats()
	if st.Evictions != 5 {
		t.Errorf("evictions %d, want 5", st.Evictions)
	}
	// The most recent file survived; the oldest did not.
	src.bytes.Store(0)
	for name, wantFetch := range map[string]bool{"h": false, "a": true} {
		h, _ := c.OpenFile(key(src, name))
		p := make([]byte, 10)
		if _, err := h.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files[name][:10]) {
			t.Errorf("%s: %v", name, err)
		}
		h.Close()
		if fetched := src.bytes.Load() > 0; fetched != wantFetch {
			t.Errorf("%s fetched=%v, want %v", name, fetched, wantFetch)
		}
		src.bytes.Store(0)
	}
}

// TestEvictionWhileReadersRun: eight readers each read their own file,
// over and over, through a budget of three files: every byte read is the
// source's, whatever was evicted under the others meanwhile, and the
// budget holds once they are done.
func TestEvictionWhileReadersRun(t *testing.T) {
	sizes := map[string]int{}
	for i := 0; i < 8; i++ {
		sizes[string(rune('a'+i))] = 4096 * 4
	}
	src := newSource(sizes)
	const budget = 4096 * 4 * 3
	c := open(t, t.TempDir(), src, Options{MaxBytes: budget, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	var wg sync.WaitGroup
	for name := range sizes {
		wg.Go(func() {
			for round := 0; round < 20; round++ {
				h, err := c.OpenFile(key(src, name))
				if err != nil {
					t.Errorf("%s: %v", name, err)
					return
				}
				p := make([]byte, 4096*4)
				n, err := h.ReadAt(context.Background(), p, 0)
				h.Close()
				if err != nil || n != len(p) || !bytes.Equal(p, src.files[name]) {
					t.Errorf("%s round %d: %d bytes, %v, equal %v", name, round, n, err, bytes.Equal(p, src.files[name]))
					return
				}
			}
		})
	}
	wg.Wait()
	st := c.Stats()
	if st.Evictions == 0 || st.Usage > budget {
		t.Errorf("evictions %d, usage %d of %d: want evictions and the budget kept", st.Evictions, st.Usage, budget)
	}
}

func TestOpenFilesAreNotEvicted(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 4, "b": 4096 * 4})
	c := open(t, t.TempDir(), src, Options{MaxBytes: 4096 * 4, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	ha, _ := c.OpenFile(key(src, "a"))
	defer ha.Close()
	ha.ReadAt(context.Background(), make([]byte, 4096*4), 0)
	hb, _ := c.OpenFile(key(src, "b"))
	defer hb.Close()
	p := make([]byte, 4096*4)
	if _, err := hb.ReadAt(context.Background(), p, 0); err != nil || !bytes.Equal(p, src.files["b"]) {
		t.Fatalf("read with a full budget: %v", err)
	}
	st := c.Stats()
	if st.Evictions != 0 || st.UncachedBytesServed != 4096*4 || st.Usage > 4096*4 {
		t.Errorf("stats %+v: want no eviction of the open file and b served uncached", st)
	}
}

func TestSecondProcessRefused(t *testing.T) {
	dir := t.TempDir()
	src := newSource(nil)
	c := open(t, dir, src, Options{Owner: "first mount at /x"})
	defer c.Close()
	_, err := Open(Options{Dir: dir, Logger: zerolog.Nop()}, src)
	if err == nil || !strings.Contains(err.Error(), "first mount at /x") {
		t.Fatalf("second open: %v", err)
	}
}

// BenchmarkHit measures the cost of serving a cached 128 KiB read, the
// kernel's usual request size, through ReadAt (the copy path).
func BenchmarkHit(b *testing.B) {
	src := newSource(map[string]int{"a": 8 << 20})
	c, err := Open(Options{Dir: b.TempDir(), Logger: zerolog.Nop()}, src)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	h, _ := c.OpenFile(Key{Path: "a", Ino: 1, Size: 8 << 20, Mtime: 7})
	defer h.Close()
	p := make([]byte, 128<<10)
	for off := int64(0); off < 8<<20; off += 128 << 10 {
		h.ReadAt(context.Background(), p, off)
	}
	b.SetBytes(128 << 10)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i%64) * (128 << 10)
		if _, err := h.ReadAt(context.Background(), p, off); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEvictedWhileIdleNeverServesZeros: a file evicted while its state sat
// idle (or on its way there) must not be served from the state's old
// bitmap over new, empty cache files.
func TestEvictedWhileIdleNeverServesZeros(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 4, "b": 4096 * 4})
	c := open(t, t.TempDir(), src, Options{MaxBytes: 4096 * 4, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	for i := 0; i < 50; i++ {
		for _, name := range []string{"a", "b"} {
			h, _ := c.OpenFile(key(src, name))
			// Read one block first so new files are made, then the rest.
			for _, off := range []int64{4096 * 2, 0, 4096, 4096 * 3} {
				p := make([]byte, 4096)
				if _, err := h.ReadAt(context.Background(), p, off); err != nil || !bytes.Equal(p, src.files[name][off:off+4096]) {
					t.Fatalf("round %d, %s block %d: wrong bytes (%v)", i, name, off/4096, err)
				}
			}
			h.Close()
		}
	}
	if c.Stats().Evictions == 0 {
		t.Fatal("nothing was evicted: the test did not test")
	}
}

// TestBlockSizeChangeStartsOver: a cache directory written with another
// block size keeps nothing for a file (its presence log no longer
// matches), and its blocks are fetched and served right.
func TestBlockSizeChangeStartsOver(t *testing.T) {
	src := newSource(map[string]int{"a": 4096*5 + 7})
	want := src.files["a"]
	dir := t.TempDir()
	readWhole := func(c *Cache) {
		t.Helper()
		h, err := c.OpenFile(key(src, "a"))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		p := make([]byte, len(want))
		if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(want) || !bytes.Equal(p, want) {
			t.Fatalf("read: %d %v", n, err)
		}
	}
	c := open(t, dir, src, Options{ReadAhead: -1})
	readWhole(c)
	c.Close()

	src.bytes.Store(0)
	c = open(t, dir, src, Options{BlockSize: 8192, ReadAhead: -1})
	readWhole(c)
	c.Close()
	if got := src.bytes.Load(); got != int64(len(want)) {
		t.Errorf("after a block size change the source served %d bytes, want the whole file (%d)", got, len(want))
	}
	// And the rewritten log serves the new block size after a restart.
	src.bytes.Store(0)
	c = open(t, dir, src, Options{BlockSize: 8192, ReadAhead: -1})
	defer c.Close()
	readWhole(c)
	if got := src.bytes.Load(); got != 0 {
		t.Errorf("reopened with the same block size: %d bytes fetched again", got)
	}
}

// restartFixture caches a file of four blocks and closes the cache, as a
// daemon that then went away (or a machine that went down) would leave it.
func restartFixture(t *testing.T) (src *memSource, dir, data string) {
	t.Helper()
	src = newSource(map[string]int{"a": 4096 * 4})
	dir = t.TempDir()
	c := open(t, dir, src, Options{ReadAhead: -1})
	h, _ := c.OpenFile(key(src, "a"))
	if n, err := h.ReadAt(context.Background(), make([]byte, 4096*4), 0); err != nil || n != 4096*4 {
		t.Fatal(n, err)
	}
	h.Close()
	c.Close()
	return src, dir, c.dataPath(key(src, "a").name())
}

func readAllOf(t *testing.T, c *Cache, src *memSource) *Handle {
	t.Helper()
	h, err := c.OpenFile(key(src, "a"))
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 4096*4)
	if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(p) || !bytes.Equal(p, src.files["a"]) {
		t.Fatalf("read: %d %v, equal %v", n, err, bytes.Equal(p, src.files["a"]))
	}
	return h
}

// TestLostBlockAfterRestartIsFetchedAgain: a crash of the machine may
// leave a block recorded present whose bytes never reached the disk (here:
// zeroed). After the restart (a new boot id) the block fails its checksum
// and is fetched again; the other blocks are served from disk.
func TestLostBlockAfterRestartIsFetchedAgain(t *testing.T) {
	src, dir, data := restartFixture(t)
	f, err := os.OpenFile(data, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(make([]byte, 4096), 4096*2)
	f.Close()

	src.bytes.Store(0)
	c := open(t, dir, src, Options{ReadAhead: -1})
	if !c.Cached(key(src, "a")) {
		t.Error("every block is recorded: Cached should say so before any check")
	}
	if n, err := c.Warm(context.Background(), key(src, "a")); err != nil || n != 4096 {
		t.Errorf("warm after the restart fetched %d bytes (%v), want the lost block (4096)", n, err)
	}
	h := readAllOf(t, c, src)
	if fd, ok := h.PassthroughFd(); !ok || fd <= 0 {
		t.Error("a complete file whose blocks were all checked is not offered for passthrough")
	}
	h.Close()
	c.Close()
	if got := src.bytes.Load(); got != 4096 {
		t.Errorf("after the restart the source served %d bytes, want the one lost block (4096)", got)
	}
	// At least the four blocks were checked: a state parked in the idle
	// table after the next one was made (ristretto admits asynchronously)
	// may check them again, which costs reads, never a fetch.
	if st := c.Stats(); st.Verified < 4 || st.Corrupt != 1 {
		t.Errorf("verified %d, corrupt %d; want at least 4, and 1", st.Verified, st.Corrupt)
	}

	// The next process checks every block once again and fetches nothing.
	nextProcessFetchesNothing(t, src, dir)
}

// nextProcessFetchesNothing opens dir again and expects the whole file
// right, each block checked once and nothing fetched.
func nextProcessFetchesNothing(t *testing.T, src *memSource, dir string) {
	t.Helper()
	src.bytes.Store(0)
	c := open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	readAllOf(t, c, src).Close()
	if st := c.Stats(); st.Verified != 4 || src.bytes.Load() != 0 {
		t.Errorf("next process: %d blocks checked, %d bytes fetched; want 4 and 0", st.Verified, src.bytes.Load())
	}
}

// TestUncheckedFileCheckedBeforePassthrough: the kernel reads a passed
// through file without asking, so a file recorded in another boot is
// checked whole before it is offered; a bad block means no passthrough
// (and a fetch on the next read).
func TestUncheckedFileCheckedBeforePassthrough(t *testing.T) {
	src, dir, data := restartFixture(t)
	f, _ := os.OpenFile(data, os.O_WRONLY, 0)
	f.WriteAt([]byte("garbage"), 4096*3+100)
	f.Close()
	c := open(t, dir, src, Options{ReadAhead: -1})
	h, _ := c.OpenFile(key(src, "a"))
	if _, ok := h.PassthroughFd(); ok {
		t.Fatal("a file with a corrupt block offered for passthrough")
	}
	h.Close()
	src.bytes.Store(0)
	h = readAllOf(t, c, src)
	if got := src.bytes.Load(); got != 4096 {
		t.Errorf("fetched %d bytes, want the corrupt block only", got)
	}
	if _, ok := h.PassthroughFd(); !ok {
		t.Error("not offered for passthrough once the bad block was fetched again")
	}
	h.Close()
	c.Close()
	// The block stored again is recorded again, and the last record wins.
	nextProcessFetchesNothing(t, src, dir)
}

// TestPrefetchReturnsBusyInsteadOfWaiting: while a reader waits on a
// demand fetch, Prefetch of a block too large to run beside it answers
// ErrBusy at once (Warm would wait), and small files still go through.
func TestPrefetchReturnsBusyInsteadOfWaiting(t *testing.T) {
	src := newSource(map[string]int{"big": 512 << 10, "small": 4096})
	c := open(t, t.TempDir(), src, Options{BlockSize: 1 << 20, ReadAhead: -1})
	defer c.Close()
	c.demand.Add(1) // a reader waits
	if n, err := c.Prefetch(context.Background(), key(src, "big")); !errors.Is(err, ErrBusy) || n != 0 {
		t.Fatalf("prefetch of 512 KiB beside a demand read: %d %v, want ErrBusy", n, err)
	}
	if n, err := c.Prefetch(context.Background(), key(src, "small")); err != nil || n != 4096 {
		t.Fatalf("prefetch of 4 KiB beside a demand read: %d %v", n, err)
	}
	c.demand.Add(-1)
	if n, err := c.Prefetch(context.Background(), key(src, "big")); err != nil || n != 512<<10 {
		t.Fatalf("prefetch with no reader waiting: %d %v", n, err)
	}
	if !c.Cached(key(src, "big")) {
		t.Error("not cached after prefetch")
	}
}

// TestPrefetchWholeHandsOverOneBlockFiles: PrefetchWhole passes on the
// bytes of a file of one block that it fetched, the source's bytes, and
// nothing for a file of several blocks or one already stored.
func TestPrefetchWholeHandsOverOneBlockFiles(t *testing.T) {
	src := newSource(map[string]int{"small": 3000, "large": 4096*2 + 10})
	c := open(t, t.TempDir(), src, Options{ReadAhead: -1})
	defer c.Close()
	var got [][]byte
	keep := func(b []byte) { got = append(got, append([]byte(nil), b...)) }
	if n, err := c.PrefetchWhole(context.Background(), key(src, "small"), keep); err != nil || n != 3000 {
		t.Fatalf("prefetch small: %d %v", n, err)
	}
	if len(got) != 1 || !bytes.Equal(got[0], src.files["small"]) {
		t.Fatalf("handed over %d slices, want the small file's bytes", len(got))
	}
	if _, err := c.PrefetchWhole(context.Background(), key(src, "large"), keep); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PrefetchWhole(context.Background(), key(src, "small"), keep); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Errorf("handed over %d slices, want only the first small fetch's", len(got))
	}
}

// TestSourceClosedOnceComplete: a file whose every block is stored needs
// its source no more, so the source file is closed then, while the handle
// stays open (the kernel may hold it long after the last read).
func TestSourceClosedOnceComplete(t *testing.T) {
	src := newSource(map[string]int{"a": 4096*2 + 10})
	c := open(t, t.TempDir(), src, Options{ReadAhead: -1})
	defer c.Close()
	h, _ := c.OpenFile(key(src, "a"))
	defer h.Close()
	h.ReadAt(context.Background(), make([]byte, 100), 0)
	if n := src.open.Load(); n != 1 {
		t.Fatalf("%d source files open while blocks are missing, want 1", n)
	}
	p := make([]byte, 4096*2+10)
	if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(p) || !bytes.Equal(p, src.files["a"]) {
		t.Fatalf("read: %d %v", n, err)
	}
	if n := src.open.Load(); n != 0 {
		t.Errorf("%d source files open after the whole file was stored, want 0", n)
	}
}

// BenchmarkBlockSum is the cost of checking one 1 MiB block after a
// restart of the machine, and of recording one when it is stored.
func BenchmarkBlockSum(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		blockSum(buf)
	}
}

// TestWarmsInFlightShareTheRoom: background fetches started together
// reserve their room before reading the source, so a budget for five
// blocks lets five of eight concurrent warms read, and the other three
// stop with ErrNoRoom instead of reading bytes that cannot be stored.
func TestWarmsInFlightShareTheRoom(t *testing.T) {
	sizes := map[string]int{}
	for i := range 8 {
		sizes[fmt.Sprintf("f%d", i)] = 4096
	}
	src := newSource(sizes)
	src.gate, src.entered = make(chan struct{}), make(chan struct{}, len(sizes))
	c := open(t, t.TempDir(), src, Options{MaxBytes: 5 * 4096, ReadAhead: -1})
	defer c.Close()
	errs := make(chan error, len(sizes))
	for name := range sizes {
		go func() {
			_, err := c.Warm(context.Background(), key(src, name))
			errs <- err
		}()
	}
	var ok, noRoom int
	for entered := 0; entered+noRoom < len(sizes); {
		select {
		case <-src.entered:
			entered++
		case err := <-errs:
			if !errors.Is(err, ErrNoRoom) {
				t.Fatalf("a warm ended before the source answered: %v", err)
			}
			noRoom++
		case <-time.After(10 * time.Second):
			t.Fatalf("warms hung: %d reading, %d without room", entered, noRoom)
		}
	}
	close(src.gate)
	for range len(sizes) - noRoom {
		if err := waitChan(t, errs, "a warm"); err != nil {
			t.Errorf("warm: %v", err)
		} else {
			ok++
		}
	}
	if ok != 5 || noRoom != 3 {
		t.Errorf("%d warms stored, %d found no room; want 5 and 3", ok, noRoom)
	}
	if got := src.bytes.Load(); got > 5*4096 {
		t.Errorf("%d bytes read from the source for a budget of %d", got, 5*4096)
	}
}
