package blockcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"
	"golang.org/x/sys/unix"
)

// ErrChanged means the source file no longer matches the identity the cache
// was asked for. It wraps EIO, which is what a reader sees.
var ErrChanged = fmt.Errorf("source file changed since the snapshot: %w", syscall.EIO)

// ErrLocked means another process owns the cache directory.
var ErrLocked = errors.New("cache directory is in use")

// Key is a source file's identity. A change in any field is a different file.
type Key struct {
	Path  string // relative to the source root
	Ino   uint64
	Size  int64
	Mtime int64 // ns
}

func (k Key) name() string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%d\x00%d\x00%s", k.Ino, k.Size, k.Mtime, k.Path)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Source opens files of the shared filesystem. Open must check the file's
// identity against key and return ErrChanged on mismatch.
type Source interface {
	Open(key Key) (SourceFile, error)
}

// SourceFile is an open source file.
type SourceFile interface {
	io.ReaderAt
	io.Closer
}

// Options configure a Cache.
type Options struct {
	Dir       string
	BlockSize int64 // default 1 MiB
	MaxBytes  int64 // budget for cached bytes on disk; 0 means no limit
	ReadAhead int   // blocks fetched ahead of a sequential reader; default 4
	// DemandFirst is how many demand fetches in flight make every
	// background fetch wait; below it, small background fetches may run
	// beside demand ones (see backgroundMayFetch). Default 8; 1 means
	// background work only when no reader waits.
	DemandFirst int64
	// IdleStateBytes bounds the memory of per-file state kept for files
	// that are not open (ristretto cost); default 64 MiB.
	IdleStateBytes int64
	// PrefetchBlock, if set, says which blocks Prefetch fetches (nil: all).
	// With peers, each node prefetches the blocks it owns, so the other
	// nodes' first reads of them hit its cache instead of every node
	// asking the owners for whole files at once.
	PrefetchBlock func(key Key, block int64) bool
	// Owner describes this process in the lock file, so a second process
	// refused the directory can say who has it.
	Owner  string
	Logger zerolog.Logger
}

// Stats are the cache's counters.
type Stats struct {
	Hits                int64 `json:"hits"`   // blocks served from disk
	Misses              int64 `json:"misses"` // blocks fetched from the source
	BytesFromSource     int64 `json:"bytes_from_source"`
	BytesFromCache      int64 `json:"bytes_from_cache"`
	Evictions           int64 `json:"evictions"` // files evicted to stay under budget
	Usage               int64 `json:"usage"`
	Budget              int64 `json:"budget"`
	PassthroughOffered  int64 `json:"passthrough_opens"`
	UncachedBytesServed int64 `json:"uncached_bytes"` // fetched but not stored: budget full or disk failing
	// Verified counts blocks read back from the cache disk and checked
	// against their checksum (once per block and process); Corrupt counts
	// blocks found damaged (a failed checksum, or a data file found
	// missing, shorter than its records or replaced), never served and
	// fetched again when read.
	Verified int64 `json:"verified_blocks"`
	Corrupt  int64 `json:"corrupt_blocks"`
}

// Cache is a directory of cached source files. Safe for concurrent use.
type Cache struct {
	opts Options
	src  Source
	log  zerolog.Logger
	lock *os.File
	dirs *layout

	// unstored keeps the last blocks served without being stored.
	unstored unstoredBlocks

	mu     sync.Mutex
	open   map[string]*fileState
	lru    list.List // of *lruEntry, most recent first
	lruIdx map[string]*list.Element
	usage  int64
	// bgReserved: bytes of background fetches in flight, counted against
	// the budget from their room check until they are stored.
	bgReserved int64
	degraded   time.Time // no stores until then
	// now is time.Now; tests set a clock of their own to pass the 30 s
	// of a degraded episode without waiting for them.
	now func() time.Time
	// full: the budget is all open files, so demand misses are served
	// without being stored, fetching only what the reader asked for (see
	// storing); fullSaid: the log said so once.
	full, fullSaid bool

	idle  *ristretto.Cache[string, *fileState]
	bufs  sync.Pool // of *[]byte, one block each (see getBuf)
	raSem *semaphore.Weighted

	hits, misses, fromSource, fromCache, evictions, passthrough, uncached atomic.Int64
	verified, corrupt                                                     atomic.Int64
	// demand counts fetches a reader is waiting on; background work holds
	// back while it is non-zero.
	demand   atomic.Int64
	bgBytes  atomic.Int64 // size of background fetches in flight
	scanDone chan struct{}
}

type lruEntry struct {
	name  string
	bytes int64
	// recent marks files read or stored during this run. Background
	// fetches may evict only files that are not recent, so prefetching
	// never pushes out what the job itself just read.
	recent bool
}

// Open takes the cache directory, creating it 0700 if it is missing, and
// starts the background scan that counts what earlier runs left. A cache
// directory, or blocks directory, that is not private to the effective
// user is refused with ErrUnsafeDir.
func Open(opts Options, src Source) (*Cache, error) {
	if opts.BlockSize <= 0 {
		opts.BlockSize = 1 << 20
	}
	if opts.ReadAhead < 0 {
		opts.ReadAhead = 0
	} else if opts.ReadAhead == 0 {
		opts.ReadAhead = 4
	}
	if opts.DemandFirst <= 0 {
		opts.DemandFirst = 8
	}
	if opts.IdleStateBytes <= 0 {
		opts.IdleStateBytes = 64 << 20
	}
	dirs, err := openLayout(opts.Dir)
	if err != nil {
		return nil, err
	}
	lock, err := dirs.takeLock(opts.Owner)
	if err != nil {
		dirs.close()
		return nil, err
	}
	idle, err := ristretto.NewCache(&ristretto.Config[string, *fileState]{
		NumCounters: 10 * (opts.IdleStateBytes / 256),
		MaxCost:     opts.IdleStateBytes,
		BufferItems: 64,
	})
	if err != nil {
		lock.Close()
		dirs.close()
		return nil, fmt.Errorf("blockcache: %w", err)
	}
	c := &Cache{
		now:      time.Now,
		opts:     opts,
		src:      src,
		log:      opts.Logger.With().Str("component", "blockcache").Logger(),
		lock:     lock,
		dirs:     dirs,
		open:     map[string]*fileState{},
		lruIdx:   map[string]*list.Element{},
		idle:     idle,
		raSem:    semaphore.NewWeighted(16),
		scanDone: make(chan struct{}),
	}
	go c.scan()
	return c, nil
}

// Close releases the directory. Open handles must be closed first.
func (c *Cache) Close() error {
	<-c.scanDone
	c.idle.Close()
	err := c.lock.Close()
	c.dirs.close()
	return err
}

// WaitScan blocks until the start-up usage scan is done; for tests.
func (c *Cache) WaitScan() { <-c.scanDone }

// Stats returns a copy of the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	u := c.usage
	c.mu.Unlock()
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(),
		BytesFromSource: c.fromSource.Load(), BytesFromCache: c.fromCache.Load(),
		Evictions: c.evictions.Load(), Usage: u, Budget: c.opts.MaxBytes,
		PassthroughOffered: c.passthrough.Load(), UncachedBytesServed: c.uncached.Load(),
		Verified: c.verified.Load(), Corrupt: c.corrupt.Load(),
	}
}

// dataPath is where name's data file is, for messages and tests; the cache
// itself reaches it through c.dirs.
func (c *Cache) dataPath(name string) string { return c.dirs.shown(name) }

// scan counts the disk usage of files cached by earlier runs, oldest last
// in LRU order by modification time. It runs after the mount serves, so a
// large cache never delays start-up.
func (c *Cache) scan() {
	defer close(c.scanDone)
	type found struct {
		name  string
		bytes int64
		mtime int64
	}
	var fs []found
	c.dirs.list(func(n string, st *unix.Stat_t) {
		if !strings.Contains(n, ".") && st.Mode&unix.S_IFMT == unix.S_IFREG {
			fs = append(fs, found{n, st.Blocks * 512, st.Mtim.Nano()})
		}
	})
	sort.Slice(fs, func(i, j int) bool { return fs[i].mtime > fs[j].mtime })
	c.mu.Lock()
	for _, f := range fs {
		if _, ok := c.lruIdx[f.name]; ok {
			continue // already touched by this run, which knows better
		}
		c.lruIdx[f.name] = c.lru.PushBack(&lruEntry{name: f.name, bytes: f.bytes})
		c.usage += f.bytes
	}
	c.evictLocked(0, false)
	usage := c.usage
	c.mu.Unlock()
	c.log.Info().Int("files", len(fs)).Int64("bytes", usage).Msg("cache scanned")
}

// touchLocked moves name to the front of the LRU, adding bytes.
func (c *Cache) touchLocked(name string, bytes int64) {
	el, ok := c.lruIdx[name]
	if !ok {
		el = c.lru.PushFront(&lruEntry{name: name})
		c.lruIdx[name] = el
	} else {
		c.lru.MoveToFront(el)
	}
	e := el.Value.(*lruEntry)
	e.bytes += bytes
	e.recent = true
	c.usage += bytes
}

// evictLocked removes least recently used files that are not open until
// need more bytes fit under the budget. It reports whether they fit. With
// spareRecent, files used during this run are not evicted either.
func (c *Cache) evictLocked(need int64, spareRecent bool) bool {
	if c.opts.MaxBytes <= 0 {
		return true
	}
	if spareRecent && !c.fitsSparingRecentLocked(need) {
		return false
	}
	for el := c.lru.Back(); el != nil && c.usage+need > c.opts.MaxBytes; {
		prev := el.Prev()
		e := el.Value.(*lruEntry)
		if _, busy := c.open[e.name]; !busy && !(spareRecent && e.recent) {
			if st, ok := c.idle.Get(e.name); ok {
				st.dead.Store(true)
				c.idle.Del(e.name)
			}
			// The log goes first: killed between the two, a data file
			// without its log is nothing cached, while a log without its
			// data would promise blocks that are gone.
			c.evictFiles(e.name)
			c.usage -= e.bytes
			c.lru.Remove(el)
			delete(c.lruIdx, e.name)
			c.evictions.Add(1)
		}
		el = prev
	}
	return c.usage+need <= c.opts.MaxBytes
}

// fitsSparingRecentLocked reports whether need bytes fit after evicting
// only files that are neither open nor recent.
func (c *Cache) fitsSparingRecentLocked(need int64) bool { return c.fitsLocked(need, true) }

// fitsLocked reports whether need bytes fit after evicting files that are
// not open (and, with spareRecent, not recent).
func (c *Cache) fitsLocked(need int64, spareRecent bool) bool {
	free := c.opts.MaxBytes - c.usage
	for el := c.lru.Back(); el != nil && free < need; el = el.Prev() {
		e := el.Value.(*lruEntry)
		if _, busy := c.open[e.name]; !busy && !(spareRecent && e.recent) {
			free += e.bytes
		}
	}
	return free >= need
}

// storing reports whether a demand block of n bytes would be stored.
// When it would not (the cache disk failing, or the budget all open
// files), a miss reads only the bytes asked for: a whole block fetched to
// serve 128 KiB of it and then thrown away would multiply the source's
// load. The walk for room stops at the first files that make it, the
// oldest, which are seldom open.
func (c *Cache) storing(n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now().Before(c.degraded) {
		return false
	}
	if c.opts.MaxBytes > 0 && c.usage+n > c.opts.MaxBytes && !c.fitsLocked(n, false) {
		c.fullLocked()
		return false
	}
	c.full = false
	return true
}

// fullLocked notes that the budget is all open files, logging it once per
// process: it comes and goes as files are opened and given back.
func (c *Cache) fullLocked() {
	c.full = true
	if !c.fullSaid {
		c.fullSaid = true
		c.log.Warn().Int64("budget", c.opts.MaxBytes).Msg("cache budget is taken by open files; serving new blocks without storing them until files are given back")
	}
}

// Crowded reports whether the budget is taken by open files, so that
// whoever holds files open without a reader should give them back soon.
func (c *Cache) Crowded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.full
}

// admit reserves room for n more bytes, evicting if needed. False means
// serve the block without storing it. Background fetches are admitted only
// when they fit without evicting anything this run has used.
func (c *Cache) admit(name string, n int64, background bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if background {
		c.bgReserved -= n // taken by roomForBackground
	}
	if c.now().Before(c.degraded) {
		return false
	}
	if background {
		return c.evictLocked(n, true) && c.touch(name, n)
	}
	if !c.evictLocked(n, false) {
		c.fullLocked()
		return false
	}
	c.full = false
	return c.touch(name, n)
}

func (c *Cache) touch(name string, n int64) bool {
	c.touchLocked(name, n)
	return true
}

// roomForBackground reports whether a background fetch of n bytes would be
// stored; it is asked before reading the source, so prefetch never reads
// bytes it would have to throw away. A yes reserves the room until the
// fetch is admitted (admit) or fails (unreserveBackground): without it,
// fetches in flight together all see the same free bytes, and those
// stored last are refused after their source read.
func (c *Cache) roomForBackground(n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.now().After(c.degraded) || c.opts.MaxBytes > 0 && !c.fitsSparingRecentLocked(n+c.bgReserved) {
		return false
	}
	c.bgReserved += n
	return true
}

// unreserveBackground gives back the room of a background fetch that
// stores nothing.
func (c *Cache) unreserveBackground(n int64) {
	c.mu.Lock()
	c.bgReserved -= n
	c.mu.Unlock()
}

// dropUsage forgets up to n bytes counted for name, whose data file of n
// bytes on disk was removed to start it over.
func (c *Cache) dropUsage(name string, n int64) {
	c.mu.Lock()
	if el, ok := c.lruIdx[name]; ok {
		e := el.Value.(*lruEntry)
		n = min(n, e.bytes)
		e.bytes -= n
		c.usage -= n
	}
	c.mu.Unlock()
}

// unadmit gives back a reservation whose write failed.
func (c *Cache) unadmit(name string, n int64) {
	c.mu.Lock()
	if el, ok := c.lruIdx[name]; ok {
		el.Value.(*lruEntry).bytes -= n
		c.usage -= n
	}
	c.mu.Unlock()
}

// degradedFor is how long storing stays off after a cache disk error: long
// enough not to retry a failing disk on every block, short enough that
// room freed by the job is used again soon.
const degradedFor = 30 * time.Second

// degrade stops storing for a while after a cache disk error. Reads go on
// from the source; the log says so once per episode.
func (c *Cache) degrade(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.now().Before(c.degraded) {
		return
	}
	c.degraded = c.now().Add(degradedFor)
	c.log.Error().Err(err).Msg("cache disk failed; reading straight from the source for 30s")
}

// OpenFile returns a handle for reading key's bytes. It touches no source.
func (c *Cache) OpenFile(key Key) (*Handle, error) {
	name := key.name()
	c.mu.Lock()
	st := c.open[name]
	if st == nil {
		if v, ok := c.idle.Get(name); ok && !v.dead.Load() {
			st = v
		} else {
			st = newFileState(c, name, key)
		}
		c.open[name] = st
	}
	st.refs++
	if el, ok := c.lruIdx[name]; ok {
		c.lru.MoveToFront(el)
		el.Value.(*lruEntry).recent = true
	}
	c.mu.Unlock()
	st.activate()
	h := &Handle{st: st}
	h.lastEnd.Store(-1)
	return h, nil
}

// hold and release count users of a state: handles and fetches in flight.
// The last release closes the state's descriptors and parks it in the idle
// table.
func (c *Cache) hold(st *fileState) {
	c.mu.Lock()
	st.refs++
	c.mu.Unlock()
}

func (c *Cache) release(st *fileState) {
	c.mu.Lock()
	st.refs--
	last := st.refs == 0
	if last && c.open[st.name] == st {
		delete(c.open, st.name)
	}
	c.mu.Unlock()
	if last {
		st.deactivate()
		if !st.dead.Load() {
			c.idle.Set(st.name, st, st.cost())
		}
	}
}

// evictFiles removes a cache file's presence log, then its data. A name
// that stays behind is found again by the next scan and evicted then.
func (c *Cache) evictFiles(name string) {
	for _, n := range []string{name + ".present", name} {
		if err := c.dirs.remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn().Err(err).Str("file", n).Msg("eviction could not remove a cache file")
		}
	}
}
