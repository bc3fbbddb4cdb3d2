package main

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sync/errgroup"
)

// floorInFlight is how many files the floor fetches at once: more than any
// stage-in or cache keeps in flight, so the floor is what the source
// allows, not what a tool chose.
const floorInFlight = 128

// floor stages the job's files the fastest way the source allows: the
// file list is known up front (no walk: directories come from the layout),
// and every file is copied with floorInFlight in flight. The job then runs
// on local disk. No stage-in can beat it.
func (b *bench) floor(ctx context.Context, src string, cl *cleanups) (string, error) {
	dst := b.scratch("floor", "copy", cl)
	var files []string
	for _, e := range layout(b.cfg.data) {
		if e.dir {
			if err := os.MkdirAll(filepath.Join(dst, e.rel), 0o755); err != nil {
				return "", err
			}
			continue
		}
		files = append(files, e.rel)
	}
	return dst, copyFiles(ctx, src, dst, files, floorInFlight)
}

// copyFiles copies each of files (relative paths, parents existing) from
// src to dst with n in flight.
func copyFiles(ctx context.Context, src, dst string, files []string, n int) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(n)
	for _, rel := range files {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			return copyFile(filepath.Join(src, rel), filepath.Join(dst, rel))
		})
	}
	return g.Wait()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
