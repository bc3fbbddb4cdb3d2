package daemon

import (
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/metrics"
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
// since a scrape endpoint dies with the job. A port already taken costs
// the job its metrics, not its mount: a warning in the log.
func (d *state) startMetrics() (stop func()) {
	o, log := d.cfg.Metrics, d.log
	gather := func() []metrics.Family { return families(d.Status()) }
	stopServe := func() {}
	if o.Addr != "" {
		if l, err := metrics.Listen(o.Addr, o.Public); err != nil {
			log.Warn().Err(err).Msg("no metrics endpoint")
		} else {
			log.Info().Str("addr", l.Addr().String()).Msg("serving metrics")
			stopServe = metrics.Serve(l, gather)
		}
	}
	if o.File == "" {
		return stopServe
	}
	write := func() {
		if err := metrics.WriteFile(o.File, gather()); err != nil {
			log.Warn().Err(err).Msg("metrics file")
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

// families are the metrics of one mount, labelled with its mountpoint so
// that one collector can tell a node's mounts apart. The source path is
// not published: it can name a user's or a project's directory.
func families(r control.StatusReply) []metrics.Family {
	lbl := map[string]string{"mountpoint": r.Mountpoint}
	one := func(name, help string, kind metrics.Kind, v int64) metrics.Family {
		return metrics.Family{Name: "cachefs_" + name, Help: help, Kind: kind,
			Samples: []metrics.Sample{{Labels: lbl, Value: float64(v)}}}
	}
	c := r.Cache
	fams := []metrics.Family{
		{Name: "cachefs_read_bytes_total", Help: "Bytes read, by where they came from.", Kind: metrics.Counter,
			Samples: []metrics.Sample{
				{Labels: map[string]string{"mountpoint": r.Mountpoint, "from": "source"}, Value: float64(c.BytesFromSource)},
				{Labels: map[string]string{"mountpoint": r.Mountpoint, "from": "cache"}, Value: float64(c.BytesFromCache)},
			}},
		one("served_bytes_total", "Bytes served to readers through the mount.", metrics.Counter, r.BytesServed),
		one("opens_total", "Files opened through the mount.", metrics.Counter, r.Opens),
		one("block_hits_total", "Blocks served from the cache.", metrics.Counter, c.Hits),
		one("block_misses_total", "Blocks fetched from the source.", metrics.Counter, c.Misses),
		one("evictions_total", "Files evicted to stay under the cache budget.", metrics.Counter, c.Evictions),
		one("passthrough_opens_total", "Opens handed to the kernel for passthrough.", metrics.Counter, c.PassthroughOffered),
		one("uncached_bytes_total", "Bytes fetched but not kept: budget full or cache disk failing.", metrics.Counter, c.UncachedBytesServed),
		{Name: "cachefs_errors_total", Help: "Errors, by kind.", Kind: metrics.Counter,
			Samples: []metrics.Sample{
				{Labels: map[string]string{"mountpoint": r.Mountpoint, "kind": "fuse"}, Value: float64(r.Errors)},
				{Labels: map[string]string{"mountpoint": r.Mountpoint, "kind": "corrupt_block"}, Value: float64(c.Corrupt)},
			}},
		one("cache_size_bytes", "Bytes the cache holds on disk.", metrics.Gauge, c.Usage),
		one("cache_budget_bytes", "Most bytes the cache may hold.", metrics.Gauge, c.Budget),
		one("snapshot_entries", "Entries in the mount's snapshot.", metrics.Gauge, r.Snapshot.Entries),
		one("snapshot_bytes", "Bytes of the files in the mount's snapshot.", metrics.Gauge, r.Snapshot.Bytes),
		{Name: "cachefs_uptime_seconds", Help: "Seconds since the mount started serving.", Kind: metrics.Gauge,
			Samples: []metrics.Sample{{Labels: lbl, Value: r.UptimeSeconds}}},
	}
	if p := r.Prefetch; p != nil {
		fams = append(fams,
			one("prefetch_files_total", "Files fetched ahead by the prefetcher.", metrics.Counter, p.Done),
			one("prefetch_bytes_total", "Bytes fetched ahead by the prefetcher.", metrics.Counter, p.Bytes),
			one("prefetch_queued_files", "Files waiting in the prefetch queue.", metrics.Gauge, int64(p.Queued)),
		)
	}
	return fams
}
