package prefetch

import (
	"math"
	"sync"
	"time"
)

// Controller decides how many background fetches run at once. A shared
// filesystem's per-file latency, not its bandwidth, bounds a small-file
// stage-in, so the lever is how many requests are in flight; too many and
// the source queues them (latency rises, throughput does not). The
// controller is a latency gradient with additive growth: after each window
// of Limit() samples it compares the window's mean latency with the lowest
// seen (the source unloaded). While the window stays within Tolerance of
// it, throughput is still growing with concurrency and the limit grows by
// sqrt(limit). Beyond it the limit grows only if throughput (by Little's
// law, limit over mean latency) still rose by a twentieth since the last
// window: latency that rises with the load of the whole machine rather
// than with this client's requests must not stop a stage-in that still
// gains. Otherwise the source is queueing and the limit shrinks in
// proportion. Every probeEvery windows one window runs at half the limit
// and its latency replaces the unloaded one, so a source that has become
// slower for good (other jobs, another time of day) is learned anew
// rather than read as overload forever, and a faster one is noticed.
//
// It knows no clock: callers measure and feed it latencies, so tests drive
// it with a modelled source and count.
type Controller struct {
	mu       sync.Mutex
	min, max float64
	limit    float64
	base     time.Duration // lowest window mean since the last probe
	sum      time.Duration
	n        int
	windows  int64
	probeIn  int     // windows until the next probe
	saved    float64 // the limit to return to after a probe; 0 when not probing
	tput     float64 // the last window's limit per mean latency
}

// Tolerance is how far a window's mean latency may rise above the
// unloaded latency before the limit backs off.
const Tolerance = 2

// probeEvery is how many windows pass between probes of the unloaded
// latency.
const probeEvery = 100

// NewController starts at lo in flight and never leaves [lo, hi].
func NewController(lo, hi int) *Controller {
	lo, hi = max(lo, 1), max(hi, 1)
	lo = min(lo, hi)
	return &Controller{min: float64(lo), max: float64(hi), limit: float64(lo), probeIn: probeEvery}
}

// Limit is how many fetches may be in flight now.
func (c *Controller) Limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.limit)
}

// Windows is how many windows of samples the limit was set from.
func (c *Controller) Windows() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.windows
}

// Sample adds the latency of one source request made by a fetch.
func (c *Controller) Sample(rtt time.Duration) {
	if rtt <= 0 {
		rtt = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sum += rtt
	c.n++
	if c.n < int(c.limit) {
		return
	}
	mean := c.sum / time.Duration(c.n)
	c.sum, c.n = 0, 0
	c.windows++
	if c.saved > 0 {
		c.base, c.limit, c.saved, c.tput = mean, c.saved, 0, 0
		return
	}
	if c.base == 0 || mean < c.base {
		c.base = mean
	}
	ratio := float64(mean) / float64(c.base)
	tput, prev := c.limit/float64(mean), c.tput
	c.tput = tput
	if ratio <= Tolerance || tput > prev*1.05 {
		c.limit += math.Sqrt(c.limit)
	} else {
		// The next window, at a lower limit, has no throughput to
		// compare with: it grows again, and the one after says whether
		// that paid.
		c.limit *= max(0.5, Tolerance/ratio)
		c.tput = 0
	}
	c.limit = min(max(c.limit, c.min), c.max)
	if c.probeIn--; c.probeIn <= 0 {
		c.probeIn, c.saved = probeEvery, c.limit
		c.limit = max(c.min, c.limit/2)
	}
}
