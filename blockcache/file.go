package blockcache

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// logMagic starts every presence log; the digits are the format version.
const logMagic = "CFSBLK02"

// fileState is the cache's view of one source file, shared by its handles.
type fileState struct {
	c       *Cache
	name    string
	key     Key
	nblocks int64
	refs    int // guarded by Cache.mu
	dead    atomic.Bool
	flight  singleflight.Group
	// reportedCorrupt keeps a file's failed checksums to one log line.
	reportedCorrupt atomic.Bool

	mu      sync.RWMutex
	bits    []uint64
	present int64
	sums    []uint32 // CRC-32C of each present block's bytes
	// unchecked marks present blocks recorded during another boot of the
	// machine, whose bytes must match sums before they are served;
	// nUnchecked counts them.
	unchecked  []uint64
	nUnchecked int64
	// bad marks blocks that failed their check and were not stored again
	// yet; their stale records keep the log from being stamped.
	bad  []uint64
	nBad int64
	// needStamp: the log was written in another boot, and stamping it
	// with this one, once nothing is unchecked or bad, spares the next
	// mount of this boot the checks.
	needStamp bool
	loaded    bool
	// evictSeen is Cache.evictions when the bitmap was loaded.
	evictSeen int64
	active    bool     // between activate and deactivate
	data      *os.File // nil when idle, before the first store, or when the cache disk failed
	plog      *os.File

	srcMu  sync.Mutex
	src    SourceFile
	srcErr error // sticky only for ErrChanged
}

func newFileState(c *Cache, name string, key Key) *fileState {
	bs := c.opts.BlockSize
	n := (key.Size + bs - 1) / bs
	return &fileState{c: c, name: name, key: key, nblocks: n, bits: make([]uint64, (n+63)/64), sums: make([]uint32, n)}
}

func (st *fileState) cost() int64 {
	return int64(len(st.bits))*8 + int64(len(st.unchecked))*8 + int64(len(st.sums))*4 + 256
}

func (st *fileState) has(b int64) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.bits[b/64]&(1<<(b%64)) != 0
}

func (st *fileState) header() []byte {
	var h bytes.Buffer
	h.WriteString(logMagic)
	binary.Write(&h, binary.LittleEndian, []int64{st.c.opts.BlockSize, st.key.Size, st.key.Mtime, int64(st.key.Ino)})
	return h.Bytes()
}

// activate opens the data file and presence log, loading the log the first
// time. A failure leaves the state diskless: reads then go to the source.
func (st *fileState) activate() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.active = true
	if st.data != nil || st.key.Size == 0 {
		return
	}
	st.openOrDegrade(false)
}

// openOrDegrade opens the cache files, creating them only when create is
// set: a file that is opened but never stored leaves nothing on disk.
func (st *fileState) openOrDegrade(create bool) {
	err := st.openFiles(create)
	if errors.Is(err, fs.ErrNotExist) && !create {
		// Nothing on disk: never stored, or evicted while this state sat
		// idle. Either way no block is present.
		st.forget()
		st.loaded = true
		return
	}
	if err != nil {
		st.c.degrade(fmt.Errorf("opening cache files of %s: %w", st.key.Path, err))
		if st.data != nil {
			st.data.Close()
		}
		if st.plog != nil {
			st.plog.Close()
		}
		st.data, st.plog = nil, nil
	}
}

func (st *fileState) openFiles(create bool) error {
	p := st.c.dataPath(st.name)
	flags := os.O_RDWR
	if create {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		flags |= os.O_CREATE
	}
	data, err := os.OpenFile(p, flags, 0o600)
	if err != nil {
		return err
	}
	st.data = data
	plog, err := os.OpenFile(p+".present", flags|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st.plog = plog
	var pst unix.Stat_t
	if err := unix.Fstat(int(plog.Fd()), &pst); err != nil {
		return err
	}
	if st.loaded && st.evictSeen == st.c.evictions.Load() && pst.Size > 0 {
		// No file was evicted since this state loaded its log, so its files
		// are the ones it knows and its bitmap is current. (An eviction
		// cannot touch it now: it is open.)
		return nil
	}
	// First load, or files were evicted (perhaps these, perhaps made anew
	// by another state since) while this one sat idle: reload.
	st.forget()
	st.evictSeen = st.c.evictions.Load()
	raw, err := io.ReadAll(plog)
	if err != nil {
		return err
	}
	hdr := st.header()
	if !bytes.HasPrefix(raw, hdr) || len(raw) < len(hdr)+bootSize {
		// New, or written for another block size: start over. The data
		// file is emptied too so stale blocks stop taking disk space (the
		// empty bitmap already keeps them from being read). A new, empty
		// file is not truncated: ext4 takes a truncate to 0 as "file being
		// replaced" and starts writeback at close, a synchronous cost per
		// small file that made closes the bottleneck of prefetch.
		var fst unix.Stat_t
		if err := unix.Fstat(int(data.Fd()), &fst); err != nil {
			return err
		}
		if len(raw) > 0 {
			if err := plog.Truncate(0); err != nil {
				return err
			}
		}
		if fst.Size > 0 {
			if err := data.Truncate(0); err != nil {
				return err
			}
		}
		raw = append(slices.Clip(hdr), st.c.boot[:]...)
		if _, err := plog.Write(raw); err != nil {
			return err
		}
	}
	// Records written during this boot are trusted: the kernel keeps the
	// bytes they describe through any crash of this process. After a crash
	// of the machine, a record may have reached the disk before its block,
	// so blocks recorded in another boot are checked when first read.
	otherBoot := !bytes.Equal(raw[len(hdr):len(hdr)+bootSize], st.c.boot[:])
	for r := raw[len(hdr)+bootSize:]; len(r) >= recordSize; r = r[recordSize:] {
		b, sum, ok := decodeRecord(r)
		if !ok || int64(b) >= st.nblocks {
			break // a torn or garbage tail: everything after it is ignored
		}
		if st.bits[b/64]&(1<<(b%64)) == 0 {
			st.bits[b/64] |= 1 << (b % 64)
			st.present++
		}
		st.sums[b] = sum // a block stored again records again: the last wins
		if otherBoot {
			st.markUnchecked(b)
		}
	}
	st.needStamp = st.nUnchecked > 0
	st.loaded = true
	var fst unix.Stat_t
	if unix.Fstat(int(data.Fd()), &fst) == nil && fst.Size != st.key.Size {
		// Sparse: the full length costs nothing and lets pread see the
		// whole file.
		return data.Truncate(st.key.Size)
	}
	return nil
}

// forget clears the presence bitmap; st.mu must be held.
func (st *fileState) forget() {
	clear(st.bits)
	st.present = 0
	st.unchecked, st.nUnchecked = nil, 0
	st.bad, st.nBad = nil, 0
	st.needStamp = false
}

// stampDueLocked reports, once, that every block the log lists has been
// checked or stored again during this boot; st.mu held.
func (st *fileState) stampDueLocked() bool {
	if st.nUnchecked == 0 {
		st.unchecked = nil
	}
	if !st.needStamp || st.nUnchecked != 0 || st.nBad != 0 {
		return false
	}
	st.needStamp = false
	st.bad = nil
	return true
}

// markUnchecked notes that block b's bytes need checking; st.mu held.
func (st *fileState) markUnchecked(b uint32) {
	if st.unchecked == nil {
		st.unchecked = make([]uint64, len(st.bits))
	}
	if st.unchecked[b/64]&(1<<(b%64)) == 0 {
		st.unchecked[b/64] |= 1 << (b % 64)
		st.nUnchecked++
	}
}

// trusted reports whether block b is stored and may be served. A block
// recorded during another boot is read and checked against its checksum
// first; one that fails is forgotten (logged once per file), so the caller
// fetches it again, and the rewrite records it anew.
func (st *fileState) trusted(b int64) bool {
	st.mu.RLock()
	present := st.bits[b/64]&(1<<(b%64)) != 0
	check := present && st.unchecked != nil && st.unchecked[b/64]&(1<<(b%64)) != 0
	data, want := st.data, st.sums[b]
	st.mu.RUnlock()
	if !check {
		return present
	}
	if data == nil {
		return false // not open: the caller reads the source
	}
	buf, err := st.readStored(b)
	ok := err == nil && blockSum(buf) == want
	st.c.verified.Add(1)
	st.mu.Lock()
	if st.data != data || st.unchecked == nil || st.unchecked[b/64]&(1<<(b%64)) == 0 {
		// Checked meanwhile by another reader, or the files changed under
		// us: ask again.
		st.mu.Unlock()
		return st.trusted(b)
	}
	st.unchecked[b/64] &^= 1 << (b % 64)
	st.nUnchecked--
	if !ok {
		st.bits[b/64] &^= 1 << (b % 64)
		st.present--
		if st.bad == nil {
			st.bad = make([]uint64, len(st.bits))
		}
		st.bad[b/64] |= 1 << (b % 64)
		st.nBad++
		st.c.corrupt.Add(1)
	}
	stamp := st.stampDueLocked()
	st.mu.Unlock()
	if !ok && !st.reportedCorrupt.Swap(true) {
		st.c.log.Warn().Str("path", st.key.Path).Int64("block", b).Err(err).
			Msg("a cached block does not match its checksum after a restart of the machine; fetching it again")
	}
	if stamp {
		st.stampBoot(data)
	}
	return ok
}

// stampBoot records in the presence log that every block it lists was
// checked during this boot, so the next mount before a restart of the
// machine need not check them again. The boot field is rewritten in place
// (through a descriptor of its own: writes to the O_APPEND one always
// append); a torn write only makes the next mount check again.
func (st *fileState) stampBoot(data *os.File) {
	if data == nil {
		return
	}
	f, err := os.OpenFile(st.c.dataPath(st.name)+".present", os.O_WRONLY, 0)
	if err != nil {
		return
	}
	defer f.Close()
	f.WriteAt(st.c.boot[:], int64(len(st.header())))
}

// deactivate closes the state's descriptors unless a user came back. The
// cache files are local and close fast, so that part runs under Cache.mu;
// the source file closes outside it, and a fetch that loses its source
// descriptor to this race simply opens it again.
func (st *fileState) deactivate() {
	st.c.mu.Lock()
	if st.refs != 0 {
		st.c.mu.Unlock()
		return
	}
	st.mu.Lock()
	st.active = false
	if st.data != nil {
		st.data.Close()
		st.plog.Close()
		st.data, st.plog = nil, nil
	}
	st.mu.Unlock()
	st.c.mu.Unlock()
	st.srcMu.Lock()
	if st.src != nil {
		st.src.Close()
		st.src = nil
	}
	st.srcMu.Unlock()
}

func (st *fileState) source() (SourceFile, error) {
	st.srcMu.Lock()
	defer st.srcMu.Unlock()
	if st.srcErr != nil {
		return nil, st.srcErr
	}
	if st.src == nil {
		f, err := st.c.src.Open(st.key)
		if err != nil {
			if errors.Is(err, ErrChanged) {
				st.srcErr = err
				st.c.log.Error().Str("path", st.key.Path).Err(err).Msg("source file changed since the snapshot; its uncached blocks fail with EIO")
			}
			return nil, err
		}
		st.src = f
	}
	return st.src, nil
}

// fetch returns block b's bytes, from one source read however many callers
// ask at once. The read runs detached: a caller that gives up (ctx) leaves
// it to finish for the others and for the cache.
func (st *fileState) fetch(ctx context.Context, b int64, background bool) ([]byte, error) {
	ch := st.flight.DoChan(strconv.FormatInt(b, 10), func() (any, error) {
		st.c.hold(st)
		defer st.c.release(st)
		return st.fetchBlock(b, background)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.([]byte), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (st *fileState) fetchBlock(b int64, background bool) ([]byte, error) {
	if st.trusted(b) {
		// Stored by a fetch that finished while this one queued.
		if buf, err := st.readStored(b); err == nil {
			return buf, nil
		}
	}
	bs := st.c.opts.BlockSize
	off := b * bs
	n := min(bs, st.key.Size-off)
	if background && !st.c.roomForBackground(n) {
		return nil, ErrNoRoom
	}
	buf := make([]byte, n)
	var got int
	var err error
	for try := 0; ; try++ {
		var src SourceFile
		if src, err = st.source(); err != nil {
			return nil, err
		}
		got, err = src.ReadAt(buf, off)
		if errors.Is(err, os.ErrClosed) && try == 0 {
			st.dropSource(src)
			continue
		}
		break
	}
	if int64(got) < n {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%s: short read at %d: %w", st.key.Path, off, ErrChanged)
		}
		return nil, err
	}
	st.c.misses.Add(1)
	st.c.fromSource.Add(n)
	st.store(b, buf, background)
	st.mu.RLock()
	complete := st.present == st.nblocks
	st.mu.RUnlock()
	if complete {
		// Nothing left to fetch: close the source file now rather than
		// when the last handle goes, which with the kernel opening files
		// may be long after; a shared filesystem keeps state per open file.
		st.srcMu.Lock()
		src := st.src
		st.src = nil
		st.srcMu.Unlock()
		if src != nil {
			src.Close()
		}
	}
	return buf, nil
}

// dropSource forgets src if it is still the state's source.
func (st *fileState) dropSource(src SourceFile) {
	st.srcMu.Lock()
	if st.src == src {
		st.src = nil
	}
	st.srcMu.Unlock()
}

func (st *fileState) readStored(b int64) ([]byte, error) {
	bs := st.c.opts.BlockSize
	off := b * bs
	buf := make([]byte, min(bs, st.key.Size-off))
	if err := st.readCached(buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// store writes the block, then records it present: never the other way
// round, so a crash between the two only costs a refetch.
func (st *fileState) store(b int64, buf []byte, background bool) {
	n := int64(len(buf))
	if !st.c.admit(st.name, n, background) {
		st.c.uncached.Add(n)
		return
	}
	st.mu.Lock()
	if st.data == nil && st.active && st.key.Size > 0 {
		st.openOrDegrade(true)
	}
	data, plog := st.data, st.plog
	st.mu.Unlock()
	// The writes run outside st.mu so readers of other blocks are not held
	// up by them. A descriptor closed under them by deactivate fails with
	// ErrClosed (os.File makes that safe), which only costs a refetch.
	fail := func(what string, err error) {
		st.c.unadmit(st.name, n)
		st.c.uncached.Add(n)
		if err != nil && !errors.Is(err, os.ErrClosed) {
			st.c.degrade(fmt.Errorf("%s block %d of %s: %w", what, b, st.key.Path, err))
		}
	}
	if data == nil {
		fail("storing", nil)
		return
	}
	if _, err := data.WriteAt(buf, b*st.c.opts.BlockSize); err != nil {
		fail("writing", err)
		return
	}
	// Appends of one small record are atomic under O_APPEND, so stores of
	// different blocks may record concurrently.
	sum := blockSum(buf)
	if _, err := plog.Write(encodeRecord(uint32(b), sum)); err != nil {
		fail("recording", err)
		return
	}
	st.mu.Lock()
	// Only if the files written are still this state's: after a close and
	// reopen (perhaps of files made anew after an eviction) the bitmap
	// describes other files, and the record, if it landed in them, is
	// found by the next load anyway.
	if st.data == data {
		if st.bits[b/64]&(1<<(b%64)) == 0 {
			st.bits[b/64] |= 1 << (b % 64)
			st.present++
		}
		st.sums[b] = sum
		// Just written in this boot: nothing left to check, and its new
		// record supersedes a bad one.
		if st.unchecked != nil && st.unchecked[b/64]&(1<<(b%64)) != 0 {
			st.unchecked[b/64] &^= 1 << (b % 64)
			st.nUnchecked--
		}
		if st.bad != nil && st.bad[b/64]&(1<<(b%64)) != 0 {
			st.bad[b/64] &^= 1 << (b % 64)
			st.nBad--
		}
	}
	stamp := st.data == data && st.stampDueLocked()
	st.mu.Unlock()
	if stamp {
		st.stampBoot(data)
	}
}

// readCached reads stored bytes; any error sends the caller to the source.
func (st *fileState) readCached(p []byte, off int64) error {
	st.mu.RLock()
	data := st.data
	st.mu.RUnlock()
	if data == nil {
		return os.ErrClosed
	}
	n, err := data.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// Handle is one open of a cached file.
type Handle struct {
	st      *fileState
	lastEnd atomic.Int64
	closed  atomic.Bool
}

// ReadAt reads p at off, fetching missing blocks. It returns fewer bytes
// than len(p) only at the end of the file.
func (h *Handle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	st := h.st
	size := st.key.Size
	if off >= size || len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), size)
	bs := st.c.opts.BlockSize
	for pos := off; pos < end; {
		b := pos / bs
		bStart := b * bs
		hi := min(end, bStart+bs)
		dst := p[pos-off : hi-off]
		if st.trusted(b) && st.readCached(dst, pos) == nil {
			st.c.hits.Add(1)
			st.c.fromCache.Add(int64(len(dst)))
		} else {
			st.c.demand.Add(1)
			data, err := st.fetch(ctx, b, false)
			st.c.demand.Add(-1)
			if err != nil {
				return 0, err
			}
			copy(dst, data[pos-bStart:])
		}
		pos = hi
	}
	h.readAhead(off, end)
	return int(end - off), nil
}

// readAhead fetches the next blocks in the background when reads are
// sequential. A full semaphore skips read-ahead rather than queueing it, so
// demand reads never wait behind it.
func (h *Handle) readAhead(off, end int64) {
	prev := h.lastEnd.Swap(end)
	st := h.st
	if off == 0 || off != prev || st.c.opts.ReadAhead == 0 {
		return
	}
	bs := st.c.opts.BlockSize
	first := (end-1)/bs + 1
	for b := first; b < first+int64(st.c.opts.ReadAhead) && b < st.nblocks; b++ {
		if st.has(b) || !st.c.raSem.TryAcquire(1) {
			continue
		}
		st.c.hold(st)
		go func(b int64) {
			defer st.c.raSem.Release(1)
			defer st.c.release(st)
			st.fetch(context.Background(), b, false)
		}(b)
	}
}

// CachedFd returns a descriptor holding bytes [off, off+n) when all of them
// are stored, so the caller can splice them instead of copying. The
// descriptor stays valid while the handle is open.
func (h *Handle) CachedFd(off int64, n int) (uintptr, bool) {
	st := h.st
	if st.key.Size == 0 || off >= st.key.Size {
		return 0, false
	}
	end := min(off+int64(n), st.key.Size)
	bs := st.c.opts.BlockSize
	first, last := off/bs, (end-1)/bs
	st.mu.RLock()
	if st.unchecked != nil {
		// Only after a restart of the machine: check the blocks first.
		st.mu.RUnlock()
		for b := first; b <= last; b++ {
			if !st.trusted(b) {
				return 0, false
			}
		}
		st.mu.RLock()
	}
	defer st.mu.RUnlock()
	if st.data == nil {
		return 0, false
	}
	for b := first; b <= last; b++ {
		if st.bits[b/64]&(1<<(b%64)) == 0 {
			return 0, false
		}
	}
	st.c.hits.Add(last - first + 1)
	st.c.fromCache.Add(end - off)
	return st.data.Fd(), true
}

// PassthroughFd offers the data file for kernel passthrough when every
// block is stored: reads then never reach this process.
func (h *Handle) PassthroughFd() (int, bool) {
	st := h.st
	st.mu.RLock()
	unchecked := st.nUnchecked
	st.mu.RUnlock()
	if unchecked > 0 && st.key.Size <= passthroughCheckMax {
		// After a restart of the machine: check the whole file now. The
		// reads fill the page cache the kernel is about to read from.
		for b := int64(0); b < st.nblocks; b++ {
			if !st.trusted(b) {
				return 0, false
			}
		}
	}
	st.mu.RLock()
	defer st.mu.RUnlock()
	// The kernel would read unchecked blocks without asking: offer only a
	// file whose every block is stored and trusted.
	if st.data == nil || st.present != st.nblocks || st.nblocks == 0 || st.nUnchecked != 0 {
		return 0, false
	}
	st.c.passthrough.Add(1)
	return int(st.data.Fd()), true
}

// passthroughCheckMax is the largest file whose unchecked blocks are all
// checked at open so that it can be passed through; a larger one is served
// by the daemon, block by block, until the next mount.
const passthroughCheckMax = 64 << 20

// Close releases the handle; the state's descriptors close with the last.
func (h *Handle) Close() error {
	if h.closed.CompareAndSwap(false, true) {
		h.st.c.release(h.st)
	}
	return nil
}

// ErrNoRoom means a background fetch was not started because storing it
// would evict data this run has used.
var ErrNoRoom = errors.New("cache budget is taken by recently used data")

// backgroundBesideDemand is how many bytes of background fetches may be in
// flight while a reader waits on a demand fetch. A shared filesystem serves
// small requests in parallel at the cost of their latency, so a few small
// background reads delay no one; a large one takes bandwidth a waiting
// reader needs, so it waits until no reader does.
// With no reader waiting, background bytes in flight are still capped at
// backgroundMax, so a reader that arrives waits at most for that much to
// drain.
const (
	backgroundBesideDemand = 256 << 10
	backgroundMax          = 4 << 20
)

func (c *Cache) backgroundMayFetch(n int64) bool {
	inflight := c.bgBytes.Load()
	if inflight == 0 {
		return c.demand.Load() == 0 || n <= backgroundBesideDemand
	}
	switch d := c.demand.Load(); {
	case d == 0:
		return inflight+n <= backgroundMax
	case d < c.opts.DemandFirst:
		return inflight+n <= backgroundBesideDemand
	}
	return false
}

// Warm fetches every missing block of key's file at background priority
// (see backgroundMayFetch), waiting while demand reads hold it back, and
// stops with ErrNoRoom rather than evict recently used data. It returns the
// bytes it fetched.
func (c *Cache) Warm(ctx context.Context, key Key) (int64, error) {
	return c.warm(ctx, key, true)
}

// ErrBusy means a background fetch must wait for demand reads to finish;
// Prefetch returns it instead of waiting.
var ErrBusy = errors.New("background fetch held back by demand reads")

// Prefetch is Warm for a queue of files: where Warm would wait for demand
// reads to finish before a large block, it returns ErrBusy (with the bytes
// fetched so far), so the caller can fetch smaller files meanwhile and come
// back to this one.
func (c *Cache) Prefetch(ctx context.Context, key Key) (int64, error) {
	return c.warm(ctx, key, false)
}

func (c *Cache) warm(ctx context.Context, key Key, wait bool) (int64, error) {
	h, err := c.OpenFile(key)
	if err != nil {
		return 0, err
	}
	defer h.Close()
	st := h.st
	var fetched int64
	for b := int64(0); b < st.nblocks; b++ {
		// trusted, not has: after a restart of the machine, warming also
		// checks what is stored, so a warmed file has no lost block left.
		if st.trusted(b) {
			continue
		}
		n := min(c.opts.BlockSize, st.key.Size-b*c.opts.BlockSize)
		for !c.backgroundMayFetch(n) {
			if !wait {
				return fetched, ErrBusy
			}
			select {
			case <-ctx.Done():
				return fetched, ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		c.bgBytes.Add(n)
		data, err := st.fetch(ctx, b, true)
		c.bgBytes.Add(-n)
		if err != nil {
			return fetched, err
		}
		fetched += int64(len(data))
	}
	return fetched, nil
}

// Cached reports whether every block of key's file is stored.
func (c *Cache) Cached(key Key) bool {
	if key.Size == 0 {
		return true
	}
	h, err := c.OpenFile(key)
	if err != nil {
		return false
	}
	defer h.Close()
	h.st.mu.RLock()
	defer h.st.mu.RUnlock()
	return h.st.present == h.st.nblocks
}
