package control

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
)

// WarmPaths turns PATH arguments into paths relative to the mount root. An
// absolute PATH, or a relative one that lands in the mount from the working
// directory, names what it names; any other relative PATH is taken from the
// mount root as it is, so that the daemon resolves its ".." and refuses one
// that would leave the mount.
func WarmPaths(mnt string, args []string) ([]string, error) {
	var out []string
	for _, p := range args {
		for _, part := range strings.Split(p, "/") {
			if len(part) > snapshot.MaxNameLen {
				return nil, fmt.Errorf("%s %w", p, snapshot.ErrLongName)
			}
		}
		abs, err := filepath.Abs(p)
		switch {
		case err == nil && mounttable.Within(abs, mnt):
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(abs, mnt), "/"))
		case filepath.IsAbs(p):
			return nil, fmt.Errorf("%s is not inside the mount %s", p, mnt)
		default:
			out = append(out, p)
		}
	}
	return out, nil
}

// ErrNotCached: a warm ended with files not fully cached (the cache
// budget, the cache disk, or a source error; the daemon's log says).
var ErrNotCached = errors.New("not cached")

// ErrPath: a path asked to warm names nothing in the mount to warm.
var ErrPath = errors.New("nothing to warm there")

// WarmAll asks the daemon rec names to warm req and follows it, calling
// progress with each message, to the last, which it returns. The error's
// kind says why not everything asked for is cached: ErrPath (nothing was
// done), ErrNotCached, ErrInterrupted or ErrNoAnswer.
func WarmAll(ctx context.Context, rec *Record, req WarmRequest, progress func(WarmMsg)) (WarmMsg, error) {
	var last WarmMsg
	stream, err := Of(rec).Warm(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return last, fail(ErrInterrupted, errors.New("warm interrupted"))
		}
		return last, fmt.Errorf("%s: %w", rec.Mountpoint, err)
	}
	defer stream.Close()
	for !last.Done {
		m, err := stream.Next()
		if err != nil {
			if ctx.Err() != nil {
				return last, fail(ErrInterrupted, fmt.Errorf("warm interrupted after %s of %s", humanize.IBytes(uint64(last.BytesDone)), humanize.IBytes(uint64(last.BytesTotal))))
			}
			return last, fail(ErrNoAnswer, fmt.Errorf("%s: the daemon stopped answering: %v", rec.Mountpoint, err))
		}
		last = m
		progress(m)
	}
	switch {
	case last.PathError != "":
		return last, fail(ErrPath, errors.New(last.PathError))
	case last.Error != "":
		return last, fail(ErrNotCached, errors.New(last.Error))
	case last.FilesCached != last.FilesTotal:
		return last, fail(ErrNotCached, fmt.Errorf("%d files are not fully cached (cache budget or cache disk; see the log)", last.FilesTotal-last.FilesCached))
	}
	return last, nil
}
