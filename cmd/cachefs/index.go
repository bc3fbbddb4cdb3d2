package main

import (
	"context"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
)

// indexOptions choose where a mount's snapshot comes from: a walk of the
// source, or a snapshot index file written earlier.
type indexOptions struct{}

func (o *indexOptions) AddFlags(f *pflag.FlagSet) {}

// args forwards the options from the launcher to the daemon.
func (o *indexOptions) args() []string { return nil }

// snapshot walks src. Errors carry exit codes.
func (o *indexOptions) snapshot(ctx context.Context, log zerolog.Logger, src, cacheDir string, wo snapshot.WalkOptions) (*snapshot.Snapshot, error) {
	return snapshot.Walk(ctx, src, wo)
}
