package fusefs

import (
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestBucketIsTheFirstBoundAtOrAbove(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, time.Microsecond, 1001, 4 * time.Microsecond, 4001,
		time.Millisecond, 300 * time.Millisecond, 4 * time.Second, time.Hour} {
		i := bucket(d)
		if i < numBuckets && d.Seconds() > LatencyBuckets[i]*(1+1e-9) {
			t.Errorf("%v in bucket %d (<= %gs)", d, i, LatencyBuckets[i])
		}
		if i > 0 && d.Seconds() <= LatencyBuckets[i-1] {
			t.Errorf("%v in bucket %d, fits the one below (<= %gs)", d, i, LatencyBuckets[i-1])
		}
	}
}

func TestSnapshotCountsOpsAndErrnos(t *testing.T) {
	var s OpStats
	for i := 0; i < sampleEvery+1; i++ {
		s.done(OpLookup, s.begin(OpLookup), fuse.OK)
	}
	s.done(OpLookup, s.begin(OpLookup), fuse.ENOENT)
	s.done(OpRead, s.begin(OpRead), fuse.EIO)
	s.done(OpRead, s.begin(OpRead), fuse.Status(5000))
	got := s.Snapshot()
	if len(got) != 2 || got[0].Op != OpLookup || got[1].Op != OpRead {
		t.Fatalf("snapshot %+v: want LOOKUP and READ only", got)
	}
	l, r := got[0], got[1]
	// The first request of each sampleEvery is timed.
	if l.Count != sampleEvery+2 || l.Timed != 2 || l.Buckets[numBuckets-1] != 2 || l.Errors[syscall.ENOENT] != 1 || len(l.Errors) != 1 {
		t.Errorf("LOOKUP %+v", l)
	}
	if r.Errors[syscall.EIO] != 1 || r.Errors[0] != 1 {
		t.Errorf("READ errors %v: want one EIO and one out of range", r.Errors)
	}
}

// BenchmarkOpStatsDone is what counting adds to a request, with the two
// cores answering requests of the same opcode, beside what timing every
// request would add (two clock reads).
func BenchmarkOpStatsDone(b *testing.B) {
	var s OpStats
	b.Run("counted", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				s.done(OpLookup, s.begin(OpLookup), fuse.OK)
			}
		})
	})
	b.Run("clock-per-request", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			var d time.Duration
			for pb.Next() {
				d += time.Since(time.Now())
			}
			_ = d
		})
	})
}

// BenchmarkCountedLookup is a LOOKUP answered from the snapshot straight
// and through the counting wrapper, side by side.
func BenchmarkCountedLookup(b *testing.B) {
	t := newRawFS(wideTree(b, 1000, nil), nil, &Mount{})
	var s OpStats
	for name, fs := range map[string]fuse.RawFileSystem{"direct": t, "counted": s.wrap(t)} {
		b.Run(name, func(b *testing.B) {
			h := &fuse.InHeader{NodeId: 1}
			var out fuse.EntryOut
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					fs.Lookup(nil, h, "f0500", &out)
				}
			})
		})
	}
}
