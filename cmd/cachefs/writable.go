package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/overlay"
	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// isWritableView reports whether a mountinfo entry is a writable view of
// cachefs's: a kernel overlay carries cachefs's name; fuse-overlayfs
// ignores the name it is given, so its view is known by this user's mount
// record (which a daemon that died leaves behind).
func isWritableView(me mounttable.Entry) bool {
	switch me.FSType {
	case overlay.KindKernel:
		return me.Source == overlay.FsName
	case "fuse." + overlay.KindFuse:
		rec, _ := readRecord(me.Mountpoint)
		return rec != nil && rec.Mountpoint == me.Mountpoint && rec.Writable != nil && rec.Writable.Kind == overlay.KindFuse
	}
	return false
}

// unmountWritable detaches a writable view and then the read-only mount
// below it, whose daemon then exits. rec may be nil (the daemon died):
// the view is then detached lazily and its lower layer found from mountinfo.
func unmountWritable(o *unmountOptions, mnt string, rec *control.Record) error {
	if err := mounttable.Detach(mnt, o.lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return withCode(exitBusy, fmt.Errorf("%s is busy: processes have files open or a working directory on it (see 'fuser -vm %s'); close them, or use --lazy", mnt, mnt))
		}
		return withCode(exitInternal, err)
	}
	if rec == nil || rec.Writable == nil {
		return nil
	}
	if _, ok, _ := mounttable.Find(rec.Writable.Lower); ok {
		if err := mounttable.Detach(rec.Writable.Lower, true); err != nil && lowerMounted(rec.Writable.Lower) {
			return withCode(exitInternal, fmt.Errorf("unmounting the read-only layer %s: %w", rec.Writable.Lower, err))
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
func settleUpper(w *control.WritableRecord, keep, pushed bool) string {
	l := overlay.LayoutOf(w.Dir)
	files, bytes, _ := overlay.Usage(l.Upper)
	if keep {
		return fmt.Sprintf("kept %d changed files (%s) in %s for the next mount over this cache directory", files, humanize.IBytes(uint64(bytes)), l.Upper)
	}
	if err := overlay.Discard(l); err != nil {
		return fmt.Sprintf("could not discard the changes in %s: %v", l.Upper, err)
	}
	if files == 0 {
		return "no changes to discard"
	}
	if pushed {
		return fmt.Sprintf("removed the local copies of %d changed files (%s)", files, humanize.IBytes(uint64(bytes)))
	}
	return fmt.Sprintf("discarded %d changed files (%s) that were not pushed (--push pushes them, --keep keeps them)", files, humanize.IBytes(uint64(bytes)))
}

// unmountView unmounts a writable view: pushes first if asked (and stops
// there if the push does not succeed), then the view, then the read-only
// mount below, and says what became of the changes.
func unmountView(ctx context.Context, g *globalOptions, o *unmountOptions, mnt string, rec *control.Record) error {
	keep, conflict := o.keep, error(nil)
	if o.push {
		if rec == nil {
			return withCode(exitNotMounted, fmt.Errorf("%s: its daemon is gone; nothing pushed or unmounted", mnt))
		}
		// Conflicts are settled: everything else landed, and the
		// conflicting files are kept for a later push --force. Any other
		// failure leaves the mount as it was.
		err := pushRecord(ctx, g, &o.pushOpt, rec)
		if exitCode(err) != exitConflict && err != nil {
			return err
		}
		conflict = err
		keep = keep || err != nil
	}
	if err := unmountWritable(o, mnt, rec); err != nil {
		return err
	}
	if rec == nil || rec.Writable == nil {
		// A daemon that died leaves its read-only layer behind the view.
		if dead, _ := readRecord(mnt); dead != nil && dead.Mountpoint == mnt && dead.Writable != nil && !mounttable.ProcessAlive(dead.Pid) {
			if lowerMounted(dead.Writable.Lower) {
				_ = mounttable.Detach(dead.Writable.Lower, true)
			}
			removeRecord(mnt)
			fmt.Printf("cachefs: cleaned %s: its daemon had died; the changes stay in %s for the next mount over that cache directory\n", mnt, dead.Writable.Upper)
			return nil
		}
		fmt.Printf("cachefs: unmounted %s\n", mnt)
		return nil
	}
	if err := waitDaemon(ctx, mnt, rec, o.timeout); err != nil {
		return err
	}
	fmt.Printf("cachefs: %s\n", settleUpper(rec.Writable, keep, o.push || o.pushed))
	return conflict
}
