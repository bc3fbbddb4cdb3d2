package control

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cachefs/cachefs/overlay"
	"github.com/cachefs/cachefs/push"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
)

// ErrPush: the base snapshot is unreadable, the source refused, or some
// entries could not be pushed.
var ErrPush = errors.New("push failed")

// Push pushes the changes of the writable view rec describes to its
// source (package push) against the view's base snapshot; o's Source,
// Upper and Base are set here. The result, when not nil, is worth showing
// whatever the error, whose kind is ErrPush, ErrConflict or ErrInterrupted.
func Push(ctx context.Context, rec *Record, o push.Options) (*push.Result, error) {
	l := overlay.LayoutOf(rec.Writable.Dir)
	base, _, err := snapshot.ReadIndex(l.Base)
	if err != nil {
		return nil, fail(ErrPush, fmt.Errorf("push: the base snapshot %s: %w", l.Base, err))
	}
	o.Source, o.Upper, o.Base = rec.Source, l.Upper, base
	res, err := push.Run(ctx, o)
	switch {
	case ctx.Err() != nil:
		return res, fail(ErrInterrupted, errors.New("push interrupted; SOURCE holds only complete files"))
	case errors.Is(err, push.ErrReadOnly):
		return res, fail(ErrPush, fmt.Errorf("%s: %w", rec.Source, err))
	case err != nil:
		return res, fail(ErrPush, err)
	case res.Failed > 0:
		return res, fail(ErrPush, fmt.Errorf("push: %d entries could not be pushed (see the log lines above)", res.Failed))
	case res.Conflicts > 0:
		return res, fail(ErrConflict, fmt.Errorf("push: %d files changed on %s since the snapshot and were not overwritten (--force overwrites them)", res.Conflicts, rec.Source))
	}
	return res, nil
}

// PushReport is what `cachefs push` shows: the entries of a dry run, or
// the conflicts and failures of a push, then a line of figures.
func PushReport(r *push.Result, source string) string {
	var b strings.Builder
	verb := "pushed"
	for _, e := range r.Entries {
		switch {
		case r.DryRun:
			fmt.Fprintf(&b, "%s\t%s\n", e.Action, e.Path)
		case e.Action == push.Conflict || e.Action == push.Failed:
			fmt.Fprintf(&b, "%s\t%s\t%s\n", e.Action, e.Path, e.Error)
		}
	}
	if r.DryRun {
		verb = "would push"
	}
	fmt.Fprintf(&b, "cachefs: %s %d files (%s), %d dirs, %d symlinks, %d deletions to %s; %d unchanged, %d excluded, %d conflicts, %d deletions not pushed, %d failed\n",
		verb, r.Copied, humanize.IBytes(uint64(r.Bytes)), r.Dirs, r.Symlinks, r.Deleted, source,
		r.Unchanged, r.Excluded, r.Conflicts, r.NotPushed, r.Failed)
	return b.String()
}
