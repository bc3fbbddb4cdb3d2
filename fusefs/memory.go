package fusefs

import (
	"runtime"
	"runtime/debug"
)

// gcHeadroom is how much garbage the daemon's heap may gather between
// collections once the snapshot is built. Go's default (GOGC=100) lets
// garbage grow to the size of the live heap, and the live heap of a mount
// is mostly the snapshot: at a million entries the requests of one
// traversal left as much garbage as the snapshot itself in RSS, doubling
// the daemon's memory per entry. The snapshot holds no pointers, so a
// collection does not scan it and costs little however large it is; a
// fixed headroom is cheap.
const gcHeadroom = 32 << 20

// minGCPercent keeps collections from running back to back at ten
// million entries and more.
const minGCPercent = 5

// settleMemory gives the garbage of building the snapshot (a walk, an index
// read) back to the system and sets the collector's target so that garbage
// stays within gcHeadroom of what is live. It returns the GOGC chosen.
//
// Not debug.SetMemoryLimit: a limit near the snapshot's size would make
// the collector run continuously (up to half the CPU) whenever reads and
// prefetch legitimately hold more, while a percentage follows the live
// heap up.
func settleMemory() int {
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	pct := gcPercentFor(ms.HeapAlloc)
	debug.SetGCPercent(pct)
	return pct
}

// gcPercentFor is the GOGC that lets a heap of live bytes grow by about
// gcHeadroom, never above Go's default of 100.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return 100
	}
	return int(min(100, max(minGCPercent, 100*gcHeadroom/live)))
}
