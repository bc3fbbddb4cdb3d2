package blockcache

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachefs/cachefs/internal/testutil"
	"golang.org/x/sys/unix"
)

// cacheWhole warms a's blocks into dir's cache without reading any back,
// so no block has been checked by this process.
func cacheWhole(t *testing.T, c *Cache, src *memSource) {
	t.Helper()
	if n, err := c.Warm(context.Background(), key(src, "a")); err != nil || n != int64(len(src.files["a"])) {
		t.Fatalf("warm: %d %v", n, err)
	}
}

// readEqual reads a whole through a new handle and fails on wrong bytes.
func readEqual(t *testing.T, c *Cache, src *memSource, when string) {
	t.Helper()
	readNameEqual(t, c, src, "a", when)
}

func readNameEqual(t *testing.T, c *Cache, src *memSource, name, when string) {
	t.Helper()
	h, err := c.OpenFile(key(src, name))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	want := src.files[name]
	p := make([]byte, len(want))
	if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(want) || !bytes.Equal(p, want) {
		t.Fatalf("%s: read %d bytes (%v), equal %v", when, n, err, bytes.Equal(p, want))
	}
}

// spliceEqual asks for a's bytes the way the splice path does and fails
// if a descriptor is handed out that does not hold them.
func spliceEqual(t *testing.T, c *Cache, src *memSource, when string) {
	t.Helper()
	h, _ := c.OpenFile(key(src, "a"))
	defer h.Close()
	want := src.files["a"]
	fd, ok := h.CachedFd(0, len(want))
	if !ok {
		return // the ordinary read path serves it, and fetches
	}
	p := make([]byte, len(want))
	n, _ := unix.Pread(int(fd), p, 0)
	if n != len(want) || !bytes.Equal(p, want) {
		t.Fatalf("%s: the descriptor handed out for splicing holds %d bytes, equal %v", when, n, bytes.Equal(p[:max(n, 0)], want[:max(n, 0)]))
	}
}

// TestDamagedDataFileNeverServed: a data file zeroed, truncated or deleted
// after its blocks were stored, in the same process, is detected on the
// next read (copy or splice path); its blocks are fetched again, counted
// as corrupt, and never served. A new process over the directory then
// serves correct bytes too.
func TestDamagedDataFileNeverServed(t *testing.T) {
	damage := map[string]func(t *testing.T, data string){
		"zeroed": func(t *testing.T, data string) {
			f, err := os.OpenFile(data, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(make([]byte, 4096), 4096)
			f.Close()
		},
		"truncated": func(t *testing.T, data string) {
			if err := os.Truncate(data, 4096); err != nil {
				t.Fatal(err)
			}
		},
		"deleted": func(t *testing.T, data string) {
			if err := os.Remove(data); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range damage {
		for _, path := range []string{"read", "splice"} {
			t.Run(name+"/"+path, func(t *testing.T) {
				src := newSource(map[string]int{"a": 4096*4 - 100})
				dir := t.TempDir()
				c := open(t, dir, src, Options{ReadAhead: -1})
				defer func() { c.Close() }()
				cacheWhole(t, c, src)
				// Hold the file open, as the kernel would, across the damage.
				h, _ := c.OpenFile(key(src, "a"))
				defer h.Close()
				fn(t, c.dataPath(key(src, "a").name()))
				src.bytes.Store(0)
				if path == "splice" {
					spliceEqual(t, c, src, "after the damage")
				}
				readEqual(t, c, src, "after the damage")
				if src.bytes.Load() == 0 {
					t.Error("nothing was fetched again")
				}
				if st := c.Stats(); st.Corrupt == 0 {
					t.Errorf("stats %+v: no corrupt block counted", st)
				}
				h.Close()
				c.Close()
				c = open(t, dir, src, Options{ReadAhead: -1})
				readEqual(t, c, src, "in the next process")
				spliceEqual(t, c, src, "in the next process")
			})
		}
	}
}

// TestDataFileReplacedStartsOver: a data file replaced by a copy of
// itself (same name, size and bytes, another file) is not the one its log
// describes: the log starts over.
func TestDataFileReplacedStartsOver(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 3})
	dir := t.TempDir()
	c := open(t, dir, src, Options{ReadAhead: -1})
	cacheWhole(t, c, src)
	c.Close()
	data := c.dataPath(key(src, "a").name())
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(data, bytes.Repeat([]byte{0}, len(b)), 0o600); err != nil {
		t.Fatal(err)
	}
	c = open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	if c.Cached(key(src, "a")) {
		t.Error("a replaced data file still counts as cached")
	}
	src.bytes.Store(0)
	readEqual(t, c, src, "after the replacement")
	if src.bytes.Load() != 4096*3 {
		t.Errorf("fetched %d bytes, want the whole file", src.bytes.Load())
	}
}

// TestEvictionInterruptedBetweenRemovals builds both states an eviction
// killed between its two removals can leave, then checks that new
// processes serve correct bytes and keep what they store.
func TestEvictionInterruptedBetweenRemovals(t *testing.T) {
	for _, gone := range []string{".present", ""} {
		name := map[string]string{".present": "log removed, data left", "": "data removed, log left"}[gone]
		t.Run(name, func(t *testing.T) {
			src := newSource(map[string]int{"a": 4096 * 4})
			dir := t.TempDir()
			c := open(t, dir, src, Options{ReadAhead: -1})
			cacheWhole(t, c, src)
			c.Close()
			if err := os.Remove(c.dataPath(key(src, "a").name()) + gone); err != nil {
				t.Fatal(err)
			}
			// A header read stores one block, then a new process reads all.
			c = open(t, dir, src, Options{ReadAhead: -1})
			h, _ := c.OpenFile(key(src, "a"))
			if _, err := h.ReadAt(context.Background(), make([]byte, 100), 0); err != nil {
				t.Fatal(err)
			}
			h.Close()
			c.Close()
			c = open(t, dir, src, Options{ReadAhead: -1})
			readEqual(t, c, src, "after the interrupted eviction")
			c.Close()
			// Everything read was stored: a third process fetches nothing.
			src.bytes.Store(0)
			c = open(t, dir, src, Options{ReadAhead: -1})
			defer c.Close()
			readEqual(t, c, src, "in the third process")
			if n := src.bytes.Load(); n != 0 {
				t.Errorf("the third process fetched %d bytes: blocks read earlier were not stored", n)
			}
		})
	}
}

// TestMissingLogIsNothingCached: a data file without its presence log is
// nothing cached, not a failing cache disk: the file is stored afresh at
// once.
func TestMissingLogIsNothingCached(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 2})
	dir := t.TempDir()
	c := open(t, dir, src, Options{ReadAhead: -1})
	cacheWhole(t, c, src)
	c.Close()
	os.Remove(c.dataPath(key(src, "a").name()) + ".present")
	c = open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	readEqual(t, c, src, "without a log")
	if !c.Cached(key(src, "a")) || c.Stats().UncachedBytesServed != 0 {
		t.Errorf("stats %+v: the file was not stored again", c.Stats())
	}
}

// TestStoringOffReadsOnlyWhatWasAsked: while nothing fetched would be
// stored (budget taken by open files, or the cache disk failing), a
// sequential reader asking 128 KiB at a time costs the source no more
// than 1.1 times the bytes it is served.
func TestStoringOffReadsOnlyWhatWasAsked(t *testing.T) {
	const bs, req = 1 << 20, 128 << 10
	for _, why := range []string{"budget", "disk"} {
		t.Run(why, func(t *testing.T) {
			src := newSource(map[string]int{"held": bs, "a": 3*bs + 5000})
			opts := Options{BlockSize: bs}
			if why == "budget" {
				opts.MaxBytes = bs
			}
			c := open(t, t.TempDir(), src, opts)
			defer c.Close()
			c.WaitScan()
			held, _ := c.OpenFile(key(src, "held"))
			defer held.Close()
			if why == "budget" {
				held.ReadAt(context.Background(), make([]byte, bs), 0)
			} else {
				c.degrade(errors.New("test: the cache disk fails"))
			}
			src.bytes.Store(0)
			h, _ := c.OpenFile(key(src, "a"))
			defer h.Close()
			want := src.files["a"]
			var served int64
			for off := int64(0); off < int64(len(want)); off += req {
				p := make([]byte, req)
				n, err := h.ReadAt(context.Background(), p, off)
				if err != nil || !bytes.Equal(p[:n], want[off:off+int64(n)]) {
					t.Fatalf("read at %d: %d %v", off, n, err)
				}
				served += int64(n)
			}
			c.raSem.Acquire(context.Background(), 16) // read-ahead done
			c.raSem.Release(16)
			if got := src.bytes.Load(); float64(got) > 1.1*float64(served) {
				t.Errorf("storing off: %d bytes from the source for %d served (%.2fx)", got, served, float64(got)/float64(served))
			}
		})
	}
}

// TestCrowdedWhileBudgetHeld: the cache says it is crowded while its
// budget is all open files, and not once one is closed and room is found.
func TestCrowdedWhileBudgetHeld(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 2, "b": 4096 * 2})
	c := open(t, t.TempDir(), src, Options{MaxBytes: 4096 * 2, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	ha, _ := c.OpenFile(key(src, "a"))
	ha.ReadAt(context.Background(), make([]byte, 4096*2), 0)
	hb, _ := c.OpenFile(key(src, "b"))
	defer hb.Close()
	hb.ReadAt(context.Background(), make([]byte, 4096), 0)
	if !hb.Crowded() {
		t.Fatal("not crowded with the budget held by an open file")
	}
	ha.Close()
	hb.ReadAt(context.Background(), make([]byte, 4096), 4096)
	if hb.Crowded() || c.Stats().Evictions != 1 {
		t.Errorf("still crowded after the holder closed: %+v", c.Stats())
	}
}

// TestEvictionRemovesLogFirst watches an eviction's removals: the
// presence log must go before its data file, so that a kill between the
// two never leaves records of blocks that are gone.
func TestEvictionRemovesLogFirst(t *testing.T) {
	src := newSource(map[string]int{"a": 4096 * 2, "b": 4096 * 2})
	c := open(t, t.TempDir(), src, Options{MaxBytes: 4096 * 2, ReadAhead: -1})
	defer c.Close()
	c.WaitScan()
	readEqual(t, c, src, "a")
	data := c.dataPath(key(src, "a").name())
	events := testutil.Watch(t, filepath.Dir(data), unix.IN_DELETE)
	readNameEqual(t, c, src, "b", "b") // evicts a
	if c.Stats().Evictions != 1 {
		t.Fatalf("stats %+v: want one eviction", c.Stats())
	}
	var removed []string
	for _, ev := range events() {
		removed = append(removed, ev.Name)
	}
	base := filepath.Base(data)
	if len(removed) < 2 || removed[0] != base+".present" || removed[1] != base {
		t.Errorf("eviction removed %v, want the log, then the data file", removed)
	}
}
