package control

import (
	"context"
	"errors"
	"fmt"

	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/overlay"
	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// IsWritableView reports whether a mountinfo entry is a writable view of
// cachefs's: a kernel overlay carries cachefs's name; fuse-overlayfs
// ignores the name it is given, so its view is known by this user's mount
// record (which a daemon that died leaves behind), read with record.
func IsWritableView(me mounttable.Entry, record func(string) (*Record, error)) bool {
	switch me.FSType {
	case overlay.KindKernel:
		return me.Source == overlay.FsName
	case "fuse." + overlay.KindFuse:
		rec, _ := record(me.Mountpoint)
		return rec != nil && rec.Mountpoint == me.Mountpoint && rec.Writable != nil && rec.Writable.Kind == overlay.KindFuse
	}
	return false
}

func (u *Unmount) isView(me mounttable.Entry) bool { return IsWritableView(me, u.Record) }

// view unmounts a writable view: pushes first if asked (and stops there if
// the push does not succeed), then the view, then the read-only mount
// below, and says what became of the changes.
func (u *Unmount) view(ctx context.Context, rec *Record) error {
	mnt := u.Mountpoint
	keep, conflict := u.Keep, error(nil)
	if u.Push != nil {
		if rec == nil {
			return fail(ErrNotMounted, fmt.Errorf("%s: its daemon is gone; nothing pushed or unmounted", mnt))
		}
		// Conflicts are settled: everything else landed, and the
		// conflicting files are kept for a later push --force. Any other
		// failure leaves the mount as it was.
		err := u.Push(ctx, rec)
		if err != nil && !errors.Is(err, ErrConflict) {
			return err
		}
		conflict = err
		keep = keep || err != nil
	}
	if err := u.detachView(rec); err != nil {
		return err
	}
	if rec == nil || rec.Writable == nil {
		return u.viewOfDead()
	}
	if err := u.waitDaemon(ctx, rec); err != nil {
		return err
	}
	u.say("cachefs: %s", settleUpper(rec.Writable, keep, u.Push != nil || u.Pushed))
	return conflict
}

// viewOfDead cleans up after a view whose daemon died, which leaves its
// read-only layer behind the view.
func (u *Unmount) viewOfDead() error {
	mnt := u.Mountpoint
	if dead, _ := u.Record(mnt); dead != nil && dead.Mountpoint == mnt && dead.Writable != nil && !mounttable.ProcessAlive(dead.Pid) {
		if lowerMounted(dead.Writable.Lower) {
			_ = mounttable.Detach(dead.Writable.Lower, true) // gone or not, the changes stay where they are
		}
		u.removeRecord()
		u.say("cachefs: cleaned %s: its daemon had died; the changes stay in %s for the next mount over that cache directory", mnt, dead.Writable.Upper)
		return nil
	}
	u.say("cachefs: unmounted %s", mnt)
	return nil
}

// detachView detaches a writable view and then the read-only mount below
// it, whose daemon then exits. rec may be nil (the daemon died): the view
// is then detached lazily and its lower layer found from mountinfo.
func (u *Unmount) detachView(rec *Record) error {
	if err := mounttable.Detach(u.Mountpoint, u.Lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return busy(u.Mountpoint)
		}
		return err
	}
	if rec == nil || rec.Writable == nil {
		return nil
	}
	if lowerMounted(rec.Writable.Lower) {
		if err := mounttable.Detach(rec.Writable.Lower, true); err != nil && lowerMounted(rec.Writable.Lower) {
			return fmt.Errorf("unmounting the read-only layer %s: %w", rec.Writable.Lower, err)
		}
	}
	return nil
}

// lowerMounted reports whether a read-only layer is still mounted: the
// daemon detaches it itself once it sees its view go.
func lowerMounted(lower string) bool {
	_, ok, _ := mounttable.Find(lower)
	return ok
}

// settleUpper says what happens to the changes after an unmount: kept for
// the next mount over the same cache directory, or discarded.
func settleUpper(w *WritableRecord, keep, pushed bool) string {
	l := overlay.LayoutOf(w.Dir)
	files, bytes, _ := overlay.Usage(l.Upper)
	size := humanize.IBytes(uint64(bytes))
	if keep {
		return fmt.Sprintf("kept %d changed files (%s) in %s for the next mount over this cache directory", files, size, l.Upper)
	}
	if err := overlay.Discard(l); err != nil {
		return fmt.Sprintf("could not discard the changes in %s: %v", l.Upper, err)
	}
	switch {
	case files == 0:
		return "no changes to discard"
	case pushed:
		return fmt.Sprintf("removed the local copies of %d changed files (%s)", files, size)
	}
	return fmt.Sprintf("discarded %d changed files (%s) that were not pushed (--push pushes them, --keep keeps them)", files, size)
}
