package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/metrics"
	"github.com/spf13/pflag"
)

type metricsOptions struct {
	addr     string
	public   bool
	file     pathFlag
	interval time.Duration
}

func (o *metricsOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.addr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics; a bare port binds 127.0.0.1 (off by default)")
	f.BoolVar(&o.public, "metrics-public", false, "let --metrics-addr name an address other machines can reach")
	f.Var(&o.file, "metrics-file", "write the same metrics to this file (node_exporter's textfile format) every --metrics-interval and once more at unmount")
	f.DurationVar(&o.interval, "metrics-interval", 15*time.Second, "how often --metrics-file is rewritten")
}

// config checks the flags; an address only the public flag allows is a
// usage error, found before anything is mounted.
func (o *metricsOptions) config() (daemon.MetricsConfig, error) {
	c := daemon.MetricsConfig{Addr: o.addr, Public: o.public, Interval: o.interval}
	if o.file != "" {
		if o.interval <= 0 {
			return c, usageError(fmt.Errorf("--metrics-interval %s: want a positive duration", o.interval))
		}
		c.File = o.file.abs()
		if err := metrics.CheckFile(c.File); err != nil {
			return c, usageError(fmt.Errorf("--metrics-file: %w", err))
		}
	}
	if o.addr == "" {
		return c, nil
	}
	_, err := metrics.Resolve(o.addr, o.public)
	if errors.Is(err, metrics.ErrNotLoopback) {
		return c, usageError(fmt.Errorf("--metrics-addr %s: %w; add --metrics-public to publish metrics beyond this machine", o.addr, err))
	}
	return c, usageError(err)
}
