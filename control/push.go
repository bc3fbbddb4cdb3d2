package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/cachefs/cachefs/overlay"
	"github.com/cachefs/cachefs/push"
	"github.com/cachefs/cachefs/snapshot"
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
