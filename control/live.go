package control

import (
	"context"
	"fmt"

	"github.com/cachefs/cachefs/cachedir"
	"github.com/cachefs/cachefs/mounttable"
)

// Live returns the record of a mounted, running cachefs at mnt, read with
// record.
func Live(mnt string, record func(string) (*Record, error)) (*Record, error) {
	me, mounted, err := mounttable.Find(mnt)
	if err != nil {
		return nil, err
	}
	if !mounted || (me.FSType != mounttable.FSType && !IsWritableView(me, record)) {
		return nil, fail(ErrNotMounted, fmt.Errorf("%s is not a cachefs mount", mnt))
	}
	rec, err := record(mnt)
	if err != nil || rec.Mountpoint != mnt || rec.Exited || !mounttable.ProcessAlive(rec.Pid) {
		return nil, fail(ErrNotMounted, fmt.Errorf("%s: no running daemon of this user serves it (see 'cachefs unmount %s')", mnt, mnt))
	}
	return rec, nil
}

// AllLive returns the records of every live mount in d; skip hears of a
// record file that cannot be read.
func (d RuntimeDir) AllLive(skip func(error)) []*Record {
	files, err := d.List()
	if err != nil {
		return nil // no records of this user's, or none to trust
	}
	var out []*Record
	for _, f := range files {
		r, err := ReadRecordFile(f)
		if err != nil {
			skip(err)
			continue
		}
		if rec, err := Live(r.Mountpoint, d.Read); err == nil {
			out = append(out, rec)
		}
	}
	return out
}

// Of returns a client of the daemon a record names.
func Of(rec *Record) *Client { return Dial(cachedir.Layout(rec.CacheDir).Socket()) }

// StatusOf asks the daemon a record names for its figures.
func StatusOf(ctx context.Context, rec *Record) (*StatusReply, error) {
	r, err := Of(rec).Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", rec.Mountpoint, err)
	}
	return r, nil
}

// StatusAll asks each record's daemon for its figures; never nil.
func StatusAll(ctx context.Context, recs []*Record) ([]*StatusReply, error) {
	out := []*StatusReply{}
	for _, rec := range recs {
		r, err := StatusOf(ctx, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
