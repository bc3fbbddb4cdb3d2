package main

import (
	"context"
	"errors"

	"github.com/cachefs/cachefs/mounttable"
)

// resolveAll resolves each non-empty path in place. A path on a hung
// filesystem blocks its resolution in the kernel, so it runs aside and
// Ctrl-C still returns at once.
func resolveAll(ctx context.Context, paths ...*string) error {
	done := make(chan error, 1)
	out := make([]string, len(paths))
	go func() {
		for i, p := range paths {
			if *p == "" {
				continue
			}
			r, err := mounttable.Resolve(*p)
			if err != nil {
				done <- usageError(err)
				return
			}
			out[i] = r
		}
		done <- nil
	}()
	select {
	case <-ctx.Done():
		return withCode(exitInterrupted, errors.New("interrupted while resolving paths; nothing mounted"))
	case err := <-done:
		if err != nil {
			return err
		}
	}
	for i, p := range paths {
		if *p != "" {
			*p = out[i]
		}
	}
	return nil
}
