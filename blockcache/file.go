package blockcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
)

// fileState is the cache's view of one source file, shared by its handles.
type fileState struct {
	// Set by newFileState, then read-only.
	c       *Cache
	name    string
	key     Key
	nblocks int64

	refs int // guarded by Cache.mu

	// Safe without a lock.
	dead   atomic.Bool
	flight singleflight.Group
	// reportedCorrupt keeps a file's damage to one log line.
	reportedCorrupt atomic.Bool

	// mu guards the fields below it, up to srcMu.
	mu      sync.RWMutex
	bits    bitset
	present int64
	sums    []uint32 // CRC-32C of each present block's bytes
	// checked marks present blocks this process has read back from the
	// cache disk and found matching their sums; only those are served
	// without reading them whole. nChecked counts them.
	checked  bitset
	nChecked int64
	loaded   bool
	// evictSeen is Cache.evictions when the bitmap was loaded; id is the
	// data file the bitmap describes.
	evictSeen int64
	id        fileID
	// logSize is how many bytes of the presence log the bitmap accounts
	// for. The idle table may hand back a state that is not its file's
	// latest (another state of the file stored blocks since), and only
	// the log's length tells.
	logSize int64
	active  bool // between activate and deactivate
	// absent: this state found neither cache file on disk and nothing
	// has made them since, so the first store creates them at once.
	absent bool
	data   *os.File // nil when idle, before the first store, or when the cache disk failed
	plog   *os.File
	// retired holds descriptors of files found damaged while open: a
	// splice handed one of them may still be reading it, so they close
	// with the state's other descriptors.
	retired []*os.File

	// srcMu guards the open source file.
	srcMu  sync.Mutex
	src    SourceFile
	srcErr error // sticky only for ErrChanged
}

func newFileState(c *Cache, name string, key Key) *fileState {
	bs := c.opts.BlockSize
	n := (key.Size + bs - 1) / bs
	words := (n + 63) / 64
	return &fileState{c: c, name: name, key: key, nblocks: n,
		bits: make(bitset, words), checked: make(bitset, words), sums: make([]uint32, n)}
}

func (st *fileState) cost() int64 {
	return int64(len(st.bits))*16 + int64(len(st.sums))*4 + 256
}

func (st *fileState) has(b int64) bool {
	st.mu.RLock()
	defer st.mu.RUnlock()
	return st.bits.has(b)
}

func (st *fileState) header(id fileID) logHeader {
	return logHeader{blockSize: st.c.opts.BlockSize, size: st.key.Size, mtime: st.key.Mtime, ino: st.key.Ino, data: id}
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

// errNothingStored: the cache holds nothing of the file.
var errNothingStored = errors.New("nothing stored")

// openOrDegrade opens the cache files, creating them only when create is
// set: a file that is opened but never stored leaves nothing on disk.
func (st *fileState) openOrDegrade(create bool) {
	err := st.openFiles(create)
	if errors.Is(err, errNothingStored) && !create {
		return
	}
	if err != nil {
		st.c.degrade(fmt.Errorf("opening cache files of %s: %w", st.key.Path, err))
		st.closeFiles()
	}
}

func (st *fileState) closeFiles() {
	if st.data != nil {
		st.data.Close()
	}
	if st.plog != nil {
		st.plog.Close()
	}
	st.data, st.plog = nil, nil
}

// openFiles opens the data file and its log; st.mu held. Any doubt about
// them (a file missing, of another size or identity, a log of another
// file) costs what they held and starts the file over: never a block
// served from a file its records do not describe.
func (st *fileState) openFiles(create bool) error {
	if create && st.absent {
		st.absent = false
		// O_EXCL: a file that appeared since (planted, or made by
		// another state of the file) fails the create, and the long way
		// below deals with it.
		if err := st.createFiles(); !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	data, err := st.c.dirs.openFile(st.name, unix.O_RDWR)
	if errors.Is(err, os.ErrNotExist) {
		if st.neverStored() {
			return st.createOrNothing(create)
		}
		return st.startOver(create, "its data file is missing")
	}
	if err != nil {
		return err
	}
	id, size, err := identify(data)
	if err != nil {
		data.Close()
		return err
	}
	if size != st.key.Size {
		data.Close()
		return st.startOver(create, fmt.Sprintf("its data file has %d bytes, not %d", size, st.key.Size))
	}
	plog, err := st.c.dirs.openFile(st.name+".present", unix.O_RDWR|unix.O_APPEND)
	if errors.Is(err, os.ErrNotExist) {
		// An eviction killed between its two removals, or a log removed
		// by hand: nothing is recorded, so nothing is cached.
		data.Close()
		return st.startOver(create, "")
	}
	if err != nil {
		data.Close()
		return err
	}
	st.data, st.plog = data, plog
	if st.loaded && st.evictSeen == st.c.evictions.Load() && id == st.id && st.logUnchanged(plog) {
		// The files this state loaded its bitmap from, unchanged since.
		return nil
	}
	return st.load(create, id)
}

// load reads the presence log into the bitmap; id is the data file's
// identity; st.mu held.
func (st *fileState) load(create bool, id fileID) error {
	raw, err := io.ReadAll(st.plog)
	if err != nil {
		return err
	}
	st.forget()
	hdr, valid, ok := parsePresenceLen(raw, func(b int64, sum uint32) {
		if b >= st.nblocks {
			return // a log of another block size: refused below
		}
		if !st.bits.has(b) {
			st.bits.set(b)
			st.present++
		}
		st.sums[b] = sum // a block stored again records again: the last wins
	})
	if !ok || hdr != st.header(id) {
		// Another format, block size or data file: start over.
		st.closeFiles()
		if ok && hdr == st.header(hdr.data) {
			st.lost(st.present, "its data file was replaced")
		}
		st.forget()
		return st.startOver(create, "")
	}
	if valid < len(raw) {
		// A torn record at the tail (killed mid-append): cut it off, so
		// the records appended from now on are read back.
		if err := unix.Ftruncate(int(st.plog.Fd()), int64(valid)); err != nil {
			st.closeFiles()
			st.forget()
			return st.startOver(create, "")
		}
	}
	st.loaded, st.id, st.evictSeen = true, id, st.c.evictions.Load()
	st.logSize = int64(valid)
	return nil
}

// logUnchanged reports whether plog holds just what the bitmap accounts
// for; st.mu held.
func (st *fileState) logUnchanged(plog *os.File) bool {
	var s unix.Stat_t
	return unix.Fstat(int(plog.Fd()), &s) == nil && s.Size == st.logSize
}

// startOver forgets what the state knew of its files and removes them,
// then, with create, makes new ones; st.mu held, files closed. why, when
// set, says what damage lost the blocks the log recorded.
func (st *fileState) startOver(create bool, why string) error {
	if why != "" {
		// The bitmap counts only if it describes these files: a state
		// loaded before an eviction may describe files evicted since.
		n := st.present
		if !st.loaded || st.evictSeen != st.c.evictions.Load() {
			n = st.recordedOnDisk()
		}
		st.lost(n, why)
	}
	st.forget()
	st.loaded, st.evictSeen = true, st.c.evictions.Load()
	if err := st.removeFiles(); err != nil {
		return err
	}
	if !create {
		return errNothingStored
	}
	return st.createFiles()
}

// neverStored reports whether a state whose data file is missing has
// nothing to clear either: no bitmap of its own and no presence log on
// disk (the log is created after the data file and removed before it, so
// a log without its data file is damage, handled by startOver). It costs
// one failed open, where startOver's removals cost three calls. st.mu held.
func (st *fileState) neverStored() bool {
	if st.loaded && (st.present > 0 || st.evictSeen != st.c.evictions.Load()) {
		return false
	}
	f, err := st.c.dirs.openFile(st.name+".present", unix.O_RDONLY)
	if err == nil {
		f.Close()
	}
	return errors.Is(err, os.ErrNotExist)
}

// createOrNothing starts a file with no cache files: it creates them when
// create is set, and otherwise remembers that they are absent, so that the
// first store creates them without looking again. st.mu held.
func (st *fileState) createOrNothing(create bool) error {
	st.forget()
	st.loaded, st.evictSeen = true, st.c.evictions.Load()
	if !create {
		st.absent = true
		return errNothingStored
	}
	return st.createFiles()
}

// lost counts and reports (once per file) n recorded blocks that damage
// took.
func (st *fileState) lost(n int64, why string) {
	if n == 0 {
		return
	}
	st.c.corrupt.Add(n)
	if !st.reportedCorrupt.Swap(true) {
		st.c.log.Warn().Str("path", st.key.Path).Int64("blocks", n).Str("cause", why).
			Msg("cached blocks were damaged on the cache disk; fetching them again")
	}
}

// recordedOnDisk counts the blocks the log on disk records, for a file
// found damaged before its log was loaded.
func (st *fileState) recordedOnDisk() int64 {
	f, err := st.c.dirs.openFile(st.name+".present", unix.O_RDONLY)
	if err != nil {
		return 0
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		return 0
	}
	seen := make(bitset, len(st.bits))
	var n int64
	hdr, ok := parsePresence(raw, func(b int64, _ uint32) {
		if b < st.nblocks && !seen.has(b) {
			seen.set(b)
			n++
		}
	})
	if !ok || hdr.blockSize != st.c.opts.BlockSize || hdr.size != st.key.Size {
		return 0
	}
	return n
}

// removeFiles removes the log, then the data file: killed between the
// two, a data file without a log is nothing cached.
func (st *fileState) removeFiles() error {
	if err := st.c.dirs.remove(st.name + ".present"); err != nil {
		return err
	}
	var fst unix.Stat_t
	had := st.c.dirs.stat(st.name, &fst) == nil
	if err := st.c.dirs.remove(st.name); err != nil {
		return err
	}
	if had {
		st.c.dropUsage(st.name, fst.Blocks*512)
	}
	return nil
}

// createFiles makes a new, sparse data file of the source's size and a log
// naming it; st.mu held. Both are created O_EXCL: a name someone planted
// since removeFiles fails the create instead of receiving bytes.
func (st *fileState) createFiles() error {
	data, err := st.c.dirs.openFile(st.name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL)
	if err != nil {
		return err
	}
	// Sparse: the full length costs nothing and lets pread see the whole
	// file; a file shorter than this is damaged.
	if err := data.Truncate(st.key.Size); err != nil {
		data.Close()
		return err
	}
	id, _, err := identify(data)
	if err != nil {
		data.Close()
		return err
	}
	plog, err := st.c.dirs.openFile(st.name+".present", unix.O_RDWR|unix.O_APPEND|unix.O_CREAT|unix.O_EXCL)
	if err != nil {
		data.Close()
		return err
	}
	hdr := st.header(id).encode()
	if _, err := plog.Write(hdr); err != nil {
		data.Close()
		plog.Close()
		return err
	}
	st.data, st.plog, st.id, st.logSize = data, plog, id, int64(len(hdr))
	return nil
}

// identify returns a data file's identity and size.
func identify(f *os.File) (fileID, int64, error) {
	var sx unix.Statx_t
	err := unix.Statx(int(f.Fd()), "", unix.AT_EMPTY_PATH, unix.STATX_INO|unix.STATX_SIZE|unix.STATX_BTIME, &sx)
	if err != nil {
		return fileID{}, 0, &os.PathError{Op: "statx", Path: f.Name(), Err: err}
	}
	id := fileID{ino: sx.Ino}
	if sx.Mask&unix.STATX_BTIME != 0 {
		id.birth = sx.Btime.Sec*1e9 + int64(sx.Btime.Nsec)
	}
	return id, int64(sx.Size), nil
}

// damaged handles a data file found short or unlinked while open: what
// it recorded is lost, its files are removed, and the next store makes
// new ones. Its descriptors stay open (a splice may be reading one) until
// the state deactivates.
func (st *fileState) damaged(data *os.File, why string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.data != data || data == nil {
		return // dealt with already
	}
	st.lost(st.present, why)
	st.retired = append(st.retired, st.data, st.plog)
	st.data, st.plog = nil, nil
	st.forget()
	st.loaded = true
	if err := st.removeFiles(); err != nil {
		st.c.degrade(fmt.Errorf("removing damaged cache files of %s: %w", st.key.Path, err))
	}
}

// forget clears the presence bitmap; st.mu must be held.
func (st *fileState) forget() {
	clear(st.bits)
	clear(st.checked)
	st.present, st.nChecked = 0, 0
}

// trusted reports whether block b is stored and may be served. A block
// this process has not read back yet is read whole and checked against its
// checksum first; then buf holds its bytes, in a buffer of the cache's
// pool that the caller keeps or gives back with putBuf. One that fails is
// forgotten (logged once per file), so the caller fetches it again, and
// the rewrite records it anew.
func (st *fileState) trusted(b int64) (ok bool, buf []byte) {
	st.mu.RLock()
	present, checked := st.bits.has(b), st.checked.has(b)
	data, want := st.data, st.sums[b]
	st.mu.RUnlock()
	if !present || checked {
		return present, nil
	}
	if data == nil || !st.checkLength(data) {
		return false, nil // not open or damaged: the caller reads the source
	}
	// Readers of one block at once (the kernel's parallel read-ahead)
	// wait for one check; only the one that ran it gets the bytes.
	var again bool
	v, _, _ := st.flight.Do("check "+strconv.FormatInt(b, 10), func() (any, error) {
		var good bool
		good, again, buf = st.check(b, data, want)
		return good, nil
	})
	if again {
		// Stored again or forgotten meanwhile: ask again.
		return st.trusted(b)
	}
	return v.(bool), buf
}

// check reads block b whole from data and compares it with its checksum,
// marking it checked or forgetting it. again reports that the block's
// state changed meanwhile, so the answer is moot.
func (st *fileState) check(b int64, data *os.File, want uint32) (good, again bool, buf []byte) {
	buf = st.c.getBuf(min(st.c.opts.BlockSize, st.key.Size-b*st.c.opts.BlockSize))
	if err := st.readFrom(data, buf, b*st.c.opts.BlockSize); err != nil {
		st.c.putBuf(buf)
		return false, false, nil
	}
	good = blockSum(buf) == want
	st.c.verified.Add(1)
	st.mu.Lock()
	if st.data != data || !st.bits.has(b) || st.sums[b] != want {
		st.mu.Unlock()
		st.c.putBuf(buf)
		return false, true, nil
	}
	if good && !st.checked.has(b) {
		st.checked.set(b)
		st.nChecked++
	} else if !good {
		st.bits.clear(b)
		st.present--
	}
	st.mu.Unlock()
	if !good {
		st.c.putBuf(buf)
		st.c.corrupt.Add(1)
		if !st.reportedCorrupt.Swap(true) {
			st.c.log.Warn().Str("path", st.key.Path).Int64("block", b).
				Msg("a cached block does not match its checksum; fetching it again")
		}
		return false, false, nil
	}
	return true, false, buf
}

// getBuf returns a buffer of n bytes, at most a block, from the cache's
// pool: checking a block reads it whole, once per block and process, and
// a fresh megabyte each time would cost more than the read.
func (c *Cache) getBuf(n int64) []byte {
	if p, ok := c.bufs.Get().(*[]byte); ok {
		return (*p)[:n]
	}
	return make([]byte, n, c.opts.BlockSize)
}

func (c *Cache) putBuf(b []byte) {
	if b != nil && int64(cap(b)) == c.opts.BlockSize {
		c.bufs.Put(&b)
	}
}

// readBlock reads block b whole from data; a short read means the data
// file was damaged.
func (st *fileState) readBlock(data *os.File, b int64) ([]byte, error) {
	bs := st.c.opts.BlockSize
	off := b * bs
	buf := make([]byte, min(bs, st.key.Size-off))
	if err := st.readFrom(data, buf, off); err != nil {
		return nil, err
	}
	return buf, nil
}

// readCached reads stored bytes; any error sends the caller to the source.
func (st *fileState) readCached(p []byte, off int64) error {
	st.mu.RLock()
	data := st.data
	st.mu.RUnlock()
	if data == nil {
		return os.ErrClosed
	}
	return st.readFrom(data, p, off)
}

func (st *fileState) readFrom(data *os.File, p []byte, off int64) error {
	n, err := data.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		st.damaged(data, "its data file was truncated")
		err = io.ErrUnexpectedEOF
	}
	return err
}

// checkLength reports whether data still holds the whole file, as a
// descriptor handed to the kernel must: a splice or passthrough read of a
// truncated file would end early and look like the end of the file.
func (st *fileState) checkLength(data *os.File) bool {
	var s unix.Stat_t
	if err := unix.Fstat(int(data.Fd()), &s); err != nil {
		return false
	}
	switch {
	case s.Size < st.key.Size:
		st.damaged(data, "its data file was truncated")
		return false
	case s.Nlink == 0:
		st.damaged(data, "its data file was deleted")
		return false
	}
	return true
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
	st.closeFiles()
	for _, f := range st.retired {
		f.Close()
	}
	st.retired = nil
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

// readSource fills p from the source at off; fewer bytes than asked mean
// the file changed.
func (st *fileState) readSource(p []byte, off int64) error {
	var got int
	var err error
	for try := 0; ; try++ {
		var src SourceFile
		if src, err = st.source(); err != nil {
			return err
		}
		got, err = src.ReadAt(p, off)
		if errors.Is(err, os.ErrClosed) && try == 0 {
			st.dropSource(src)
			continue
		}
		break
	}
	if got < len(p) {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%s: short read at %d: %w", st.key.Path, off, ErrChanged)
		}
		return err
	}
	st.c.fromSource.Add(int64(len(p)))
	return nil
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
	if ok, buf := st.trusted(b); ok {
		// Stored by a fetch that finished while this one queued.
		if buf != nil {
			return buf, nil
		}
		st.mu.RLock()
		data := st.data
		st.mu.RUnlock()
		if data != nil {
			if buf, err := st.readBlock(data, b); err == nil {
				return buf, nil
			}
		}
	}
	bs := st.c.opts.BlockSize
	off := b * bs
	n := min(bs, st.key.Size-off)
	if background && !st.c.roomForBackground(n) {
		return nil, ErrNoRoom
	}
	buf := make([]byte, n)
	if err := st.readSource(buf, off); err != nil {
		if background {
			st.c.unreserveBackground(n)
		}
		return nil, err
	}
	st.c.misses.Add(1)
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

// store writes the block, then records it present: never the other way
// round, so a crash between the two only costs a refetch. The block is
// left unchecked: its first read back from the disk checks it, which
// catches damage done to the data file after it was written.
func (st *fileState) store(b int64, buf []byte, background bool) {
	n := int64(len(buf))
	if !st.c.admit(st.name, n, background) {
		st.c.uncached.Add(n)
		st.c.unstored.put(st, b, buf)
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
		st.c.unstored.put(st, b, buf)
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
	rec := encodeRecord(uint32(b), sum)
	if _, err := plog.Write(rec); err != nil {
		fail("recording", err)
		return
	}
	st.mu.Lock()
	// Only if the files written are still this state's: after a close and
	// reopen (perhaps of files made anew after an eviction) the bitmap
	// describes other files, and the record, if it landed in them, is
	// found by the next load anyway.
	if st.data == data {
		if !st.bits.has(b) {
			st.bits.set(b)
			st.present++
		}
		if st.checked.has(b) {
			st.checked.clear(b)
			st.nChecked--
		}
		st.sums[b] = sum
		st.logSize += int64(len(rec))
	}
	st.mu.Unlock()
}
