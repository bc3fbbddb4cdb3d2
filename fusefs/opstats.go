package fusefs

import (
	"math/bits"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Per-operation figures. The mount wraps its request handlers once (timed,
// below): every request the daemon answers is counted under its opcode,
// and an answer other than OK under its errno; one request in sampleEvery
// of each opcode (the first among them) is also timed into a fixed latency
// bucket. Counters are plain atomics in fixed arrays and nothing is
// allocated; readers (the metrics collector) take a snapshot whenever they
// like. fusefs only counts: how the figures are published is the daemon's
// business.
//
// Why a sample: on these virtual machines timing a request (two clock
// reads) costs 70-170 ns, more than answering a LOOKUP from the snapshot
// (55-80 ns, BenchmarkCountedLookup); counting costs one atomic add
// (BenchmarkOpStatsDone).
//
// The time is the handler's, from the request's arrival in the daemon to
// its answer being ready; a spliced read's copy into the reply and the
// kernel's queueing are not in it.

// Op is a FUSE request the mount answers. Requests the kernel stops
// sending after a first ENOSYS (ACCESS, locks, ...) and those a read-only
// mount never sees (the kernel refuses writes itself) are not counted.
type Op uint8

const (
	OpLookup Op = iota
	OpGetattr
	OpReadlink
	OpStatfs
	OpOpen
	OpRead
	OpFlush
	OpRelease
	OpOpendir
	OpReaddir
	OpReaddirplus
	OpReleasedir
	OpGetxattr
	OpListxattr
	NumOps
)

var opNames = [NumOps]string{"LOOKUP", "GETATTR", "READLINK", "STATFS", "OPEN", "READ", "FLUSH",
	"RELEASE", "OPENDIR", "READDIR", "READDIRPLUS", "RELEASEDIR", "GETXATTR", "LISTXATTR"}

// String is the kernel's name for the opcode.
func (o Op) String() string { return opNames[o] }

// LatencyBuckets are the upper bounds of the latency histogram, in seconds:
// powers of four from 1 us (an answer from the snapshot) to about 4 s (a
// cold read from a slow source). A bucket is found with one bit count.
var LatencyBuckets = func() []float64 {
	b := make([]float64, numBuckets)
	for i := range b {
		b[i] = float64(uint64(1)<<(2*i)) * 1e-6
	}
	return b
}()

const (
	numBuckets = 12
	// sampleEvery is how many requests of an opcode share one timing.
	sampleEvery = 16
	// maxErrno bounds the errnos counted one by one (Linux's highest is
	// 133); a larger one is counted under 0.
	maxErrno = 134
)

type opCounters struct {
	count   atomic.Uint64
	buckets [numBuckets + 1]atomic.Uint64 // timed requests; the last one is +Inf
	sumNs   atomic.Int64
	errnos  [maxErrno]atomic.Uint64
}

// OpStats are the per-operation counters of one mount.
type OpStats struct {
	ops [NumOps]opCounters
}

// OpFigures are one operation's counts at the time of a Snapshot.
type OpFigures struct {
	Op    Op
	Count uint64 // requests answered
	// Timed counts the requests timed (one in sampleEvery), Sum their
	// time, and Buckets[i] those that took at most LatencyBuckets[i]
	// (cumulative, as Prometheus wants them).
	Timed   uint64
	Sum     time.Duration
	Buckets []uint64
	// Errors counts answers other than OK by errno; 0 stands for an errno
	// too large to be counted by itself.
	Errors map[syscall.Errno]uint64
}

// Snapshot returns the figures of every operation answered at least once.
func (s *OpStats) Snapshot() []OpFigures {
	var out []OpFigures
	for op := range s.ops {
		c := &s.ops[op]
		f := OpFigures{Op: Op(op), Count: c.count.Load(), Buckets: make([]uint64, numBuckets)}
		if f.Count == 0 {
			continue
		}
		for i := range c.buckets {
			f.Timed += c.buckets[i].Load()
			if i < numBuckets {
				f.Buckets[i] = f.Timed
			}
		}
		f.Sum = time.Duration(c.sumNs.Load())
		for e := range c.errnos {
			if n := c.errnos[e].Load(); n > 0 {
				if f.Errors == nil {
					f.Errors = map[syscall.Errno]uint64{}
				}
				f.Errors[syscall.Errno(e)] = n
			}
		}
		out = append(out, f)
	}
	return out
}

// begin counts a request of op and returns the time it starts if it is
// one to time, or the zero time.
func (s *OpStats) begin(op Op) time.Time {
	if (s.ops[op].count.Add(1)-1)%sampleEvery != 0 {
		return time.Time{}
	}
	return time.Now()
}

// done records the answer st to a request of op that begin returned start for.
func (s *OpStats) done(op Op, start time.Time, st fuse.Status) {
	c := &s.ops[op]
	if !start.IsZero() {
		ns := time.Since(start)
		c.buckets[bucket(ns)].Add(1)
		c.sumNs.Add(int64(ns))
	}
	if st != fuse.OK {
		e := int(st)
		if e <= 0 || e >= maxErrno {
			e = 0
		}
		c.errnos[e].Add(1)
	}
}

// bucket is the index of the first bound at or above d: the number of
// base-4 digits of d in whole microseconds, rounded up.
func bucket(d time.Duration) int {
	us := (uint64(max(d, 0)) + 999) / 1000
	if us <= 1 {
		return 0
	}
	return min((bits.Len64(us-1)+1)/2, numBuckets)
}

// timed is the handler go-fuse calls: it counts each request of the
// operations above and hands it to the snapshot's handler unchanged.
type timed struct {
	fuse.RawFileSystem
	s *OpStats
}

func (s *OpStats) wrap(fs fuse.RawFileSystem) fuse.RawFileSystem { return &timed{fs, s} }

func (t *timed) Lookup(c <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	start := t.s.begin(OpLookup)
	st := t.RawFileSystem.Lookup(c, h, name, out)
	t.s.done(OpLookup, start, st)
	return st
}

func (t *timed) GetAttr(c <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	start := t.s.begin(OpGetattr)
	st := t.RawFileSystem.GetAttr(c, in, out)
	t.s.done(OpGetattr, start, st)
	return st
}

func (t *timed) Readlink(c <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	start := t.s.begin(OpReadlink)
	b, st := t.RawFileSystem.Readlink(c, h)
	t.s.done(OpReadlink, start, st)
	return b, st
}

func (t *timed) StatFs(c <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	start := t.s.begin(OpStatfs)
	st := t.RawFileSystem.StatFs(c, h, out)
	t.s.done(OpStatfs, start, st)
	return st
}

func (t *timed) Open(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	start := t.s.begin(OpOpen)
	st := t.RawFileSystem.Open(c, in, out)
	t.s.done(OpOpen, start, st)
	return st
}

func (t *timed) Read(c <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	start := t.s.begin(OpRead)
	r, st := t.RawFileSystem.Read(c, in, buf)
	t.s.done(OpRead, start, st)
	return r, st
}

func (t *timed) Flush(c <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	start := t.s.begin(OpFlush)
	st := t.RawFileSystem.Flush(c, in)
	t.s.done(OpFlush, start, st)
	return st
}

func (t *timed) Release(c <-chan struct{}, in *fuse.ReleaseIn) {
	start := t.s.begin(OpRelease)
	t.RawFileSystem.Release(c, in)
	t.s.done(OpRelease, start, fuse.OK)
}

func (t *timed) OpenDir(c <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	start := t.s.begin(OpOpendir)
	st := t.RawFileSystem.OpenDir(c, in, out)
	t.s.done(OpOpendir, start, st)
	return st
}

func (t *timed) ReadDir(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	start := t.s.begin(OpReaddir)
	st := t.RawFileSystem.ReadDir(c, in, out)
	t.s.done(OpReaddir, start, st)
	return st
}

func (t *timed) ReadDirPlus(c <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	start := t.s.begin(OpReaddirplus)
	st := t.RawFileSystem.ReadDirPlus(c, in, out)
	t.s.done(OpReaddirplus, start, st)
	return st
}

func (t *timed) ReleaseDir(in *fuse.ReleaseIn) {
	start := t.s.begin(OpReleasedir)
	t.RawFileSystem.ReleaseDir(in)
	t.s.done(OpReleasedir, start, fuse.OK)
}

func (t *timed) GetXAttr(c <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	start := t.s.begin(OpGetxattr)
	n, st := t.RawFileSystem.GetXAttr(c, h, attr, dest)
	t.s.done(OpGetxattr, start, st)
	return n, st
}

func (t *timed) ListXAttr(c <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	start := t.s.begin(OpListxattr)
	n, st := t.RawFileSystem.ListXAttr(c, h, dest)
	t.s.done(OpListxattr, start, st)
	return n, st
}
