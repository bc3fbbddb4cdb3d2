package daemon

import (
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/fusefs"
	"github.com/cachefs/cachefs/metrics"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// MetricsConfig asks for the mount's figures in Prometheus's text format:
// served at Addr (loopback only unless Public) and/or written to File
// every Interval. The zero value publishes nothing.
type MetricsConfig struct {
	Addr     string
	Public   bool
	File     string
	Interval time.Duration
}

// startMetrics serves and writes the mount's metrics as asked; the
// returned stop writes the file a last time, with the figures at unmount,
// since a scrape endpoint dies with the job. A port already taken or a
// file target found unsafe costs the job its metrics, not its mount: a
// warning in the log.
func (d *state) startMetrics() (stop func()) {
	o, log := d.cfg.Metrics, d.log
	if o.Addr == "" && o.File == "" {
		return func() {}
	}
	// The mountpoint tells one node's mounts apart; the source path is not
	// published: it can name a user's or a project's directory.
	reg, err := metrics.NewRegistry(prometheus.Labels{"mountpoint": d.cfg.Mountpoint}, collector{d})
	if err != nil {
		log.Warn().Err(err).Msg("no metrics")
		return func() {}
	}
	stopServe := func() {}
	if o.Addr != "" {
		if l, err := metrics.Listen(o.Addr, o.Public); err != nil {
			log.Warn().Err(err).Msg("no metrics endpoint")
		} else {
			log.Info().Str("addr", l.Addr().String()).Msg("serving metrics")
			stopServe = metrics.Serve(l, reg)
		}
	}
	if o.File == "" {
		return stopServe
	}
	write := func() {
		if err := metrics.WriteFile(o.File, reg); err != nil {
			log.Warn().Err(err).Msg("metrics file not written")
		}
	}
	write()
	stopTick := tick(o.Interval, write)
	return func() {
		stopTick()
		stopServe()
		write()
	}
}

// collector reads the counters the mount's parts already keep (blockcache,
// prefetch, peer, fusefs) at each scrape, so nothing is counted twice and
// nothing is counted when nobody scrapes.
type collector struct{ d *state }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("cachefs_"+name, help, labels, nil)
}

// figures are what one scrape reads from the mount's parts.
type figures struct {
	cache  blockcache.Stats
	mount  *fusefs.Stats
	snap   snapshot.Stats
	uptime time.Duration
}

// plain is a metric with no labels that one figure gives.
type plain struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(f *figures) float64
}

func counterOf(name, help string, v func(f *figures) int64) plain {
	return plain{desc(name, help), prometheus.CounterValue, func(f *figures) float64 { return float64(v(f)) }}
}

func gaugeOf(name, help string, v func(f *figures) int64) plain {
	return plain{desc(name, help), prometheus.GaugeValue, func(f *figures) float64 { return float64(v(f)) }}
}

// plainMetrics are sent at every scrape.
var plainMetrics = []plain{
	counterOf("served_bytes_total", "Bytes served to readers through the daemon (page-cache re-reads and passthrough reads never reach it).",
		func(f *figures) int64 { return f.mount.BytesServed.Load() }),
	counterOf("opens_total", "Files opened through the daemon.", func(f *figures) int64 { return f.mount.Opens.Load() }),
	counterOf("block_hits_total", "Blocks served from the cache.", func(f *figures) int64 { return f.cache.Hits }),
	counterOf("block_misses_total", "Blocks fetched from the source.", func(f *figures) int64 { return f.cache.Misses }),
	counterOf("verified_blocks_total", "Cached blocks read back and checked against their checksum.", func(f *figures) int64 { return f.cache.Verified }),
	counterOf("evictions_total", "Files evicted to stay under the cache budget.", func(f *figures) int64 { return f.cache.Evictions }),
	counterOf("passthrough_opens_total", "Opens handed to the kernel for passthrough.", func(f *figures) int64 { return f.cache.PassthroughOffered }),
	counterOf("uncached_bytes_total", "Bytes fetched but not kept: budget full or cache disk failing.", func(f *figures) int64 { return f.cache.UncachedBytesServed }),
	gaugeOf("cache_size_bytes", "Bytes the cache holds on disk.", func(f *figures) int64 { return f.cache.Usage }),
	gaugeOf("cache_budget_bytes", "Most bytes the cache may hold.", func(f *figures) int64 { return f.cache.Budget }),
	gaugeOf("snapshot_entries", "Entries in the mount's snapshot.", func(f *figures) int64 { return f.snap.Entries }),
	gaugeOf("snapshot_bytes", "Bytes of the files in the mount's snapshot.", func(f *figures) int64 { return f.snap.Bytes }),
	{desc("uptime_seconds", "Seconds since the mount started serving."), prometheus.GaugeValue, func(f *figures) float64 { return f.uptime.Seconds() }},
}

// prefetchMetrics are sent unless --prefetch is off.
var prefetchMetrics = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(s *prefetch.Stats) int64
}{
	{desc("prefetch_files_total", "Files fetched ahead by the prefetcher."), prometheus.CounterValue, func(s *prefetch.Stats) int64 { return s.Done }},
	{desc("prefetch_bytes_total", "Bytes fetched ahead by the prefetcher."), prometheus.CounterValue, func(s *prefetch.Stats) int64 { return s.Bytes }},
	{desc("prefetch_queued_files", "Files waiting in the prefetch queue."), prometheus.GaugeValue, func(s *prefetch.Stats) int64 { return int64(s.Queued) }},
	{desc("prefetch_running_files", "Files being fetched ahead now."), prometheus.GaugeValue, func(s *prefetch.Stats) int64 { return int64(s.Running) }},
	{desc("prefetch_in_flight_limit", "Fetches the prefetcher's controller allows in flight now."), prometheus.GaugeValue, func(s *prefetch.Stats) int64 { return int64(s.InFlight) }},
}

// The metrics with labels, each sent its own way.
var (
	descReadBytes   = desc("read_bytes_total", "Bytes the cache read, by where they came from (source, cache, peers).", "from")
	descErrors      = desc("errors_total", "Errors, by kind.", "kind")
	descWarmFiles   = desc("warm_files", "Files of the trees being warmed, by state (total, done, failed).", "state")
	descWarmBytes   = desc("warm_bytes", "Bytes of the trees being warmed: their size (total) and those fetched.", "state")
	descPeerServed  = desc("peer_served_bytes_total", "Bytes served to the job's other nodes.")
	descFuseOps     = desc("fuse_requests_total", "FUSE requests the daemon answered, by opcode.", "op")
	descFuseLatency = desc("fuse_request_duration_seconds", "Time the daemon took to answer a FUSE request, by opcode; one request in 16 is timed.", "op")
	descFuseErrors  = desc("fuse_request_errors_total", "FUSE requests answered with an error, by opcode and errno.", "op", "errno")
)

func (collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range plainMetrics {
		ch <- m.desc
	}
	for _, m := range prefetchMetrics {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{descReadBytes, descErrors, descWarmFiles, descWarmBytes, descPeerServed, descFuseOps, descFuseLatency, descFuseErrors} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	d := c.d
	f := figures{cache: d.cache.Stats(), mount: d.m.Stats(), snap: d.snap.Stats(), uptime: time.Since(d.started)}
	for _, m := range plainMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(&f))
	}
	c.collectSources(ch, &f)
	c.collectPrefetch(ch)
	collectOps(ch, f.mount.Ops.Snapshot())
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v int64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
}

// collectSources sends where the cache's bytes came from, and the errors.
// With peers the cache's source is the peer node, so its bytes "from the
// source" are split into what this node read itself and what peers sent.
func (c collector) collectSources(ch chan<- prometheus.Metric, f *figures) {
	fromSource := f.cache.BytesFromSource
	errs := map[string]int64{"fuse": f.mount.Errors.Load(), "corrupt_block": f.cache.Corrupt}
	if p := c.d.peers.stats(); p != nil {
		fromSource = p.BytesFromSource
		counter(ch, descReadBytes, p.BytesFromPeers, "peers")
		counter(ch, descPeerServed, p.BytesToPeers)
		errs["peer_refused"], errs["peer_rejected"] = p.Refused, p.Rejected
		for _, ps := range p.Peers {
			errs["peer_failure"] += ps.Failures
		}
	}
	counter(ch, descReadBytes, fromSource, "source")
	counter(ch, descReadBytes, f.cache.BytesFromCache, "cache")
	for kind, n := range errs {
		counter(ch, descErrors, n, kind)
	}
}

// collectPrefetch sends the prefetcher's figures, none with --prefetch off.
func (c collector) collectPrefetch(ch chan<- prometheus.Metric) {
	if c.d.pf == nil {
		return
	}
	p := c.d.pf.Stats()
	for _, m := range prefetchMetrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, float64(m.value(&p)))
	}
	if w := p.Warm; w != nil {
		gauge(ch, descWarmFiles, w.Files, "total")
		gauge(ch, descWarmFiles, w.Done, "done")
		gauge(ch, descWarmFiles, w.Failed, "failed")
		gauge(ch, descWarmBytes, w.TotalBytes, "total")
		gauge(ch, descWarmBytes, w.Bytes, "fetched")
	}
}

// collectOps turns fusefs's per-opcode counters into request and error
// counters and latency histograms; errnos are named as in errno.h
// ("ENOENT"). The histograms hold the sample fusefs timed, so their
// _count is about a sixteenth of the requests; the requests are counted
// exactly apart.
func collectOps(ch chan<- prometheus.Metric, ops []fusefs.OpFigures) {
	for _, f := range ops {
		op := f.Op.String()
		buckets := make(map[float64]uint64, len(f.Buckets))
		for i, n := range f.Buckets {
			buckets[fusefs.LatencyBuckets[i]] = n
		}
		ch <- prometheus.MustNewConstMetric(descFuseOps, prometheus.CounterValue, float64(f.Count), op)
		ch <- prometheus.MustNewConstHistogram(descFuseLatency, f.Timed, f.Sum.Seconds(), buckets, op)
		for e, n := range f.Errors {
			name := unix.ErrnoName(e)
			if name == "" {
				name = "other"
			}
			ch <- prometheus.MustNewConstMetric(descFuseErrors, prometheus.CounterValue, float64(n), op, name)
		}
	}
}
