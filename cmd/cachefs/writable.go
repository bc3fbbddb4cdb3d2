package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cachefs/cachefs/overlay"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// writableRecord is what a mount record says of a writable view, so that
// unmount, push and status find its layers.
type writableRecord struct {
	Kind  string `json:"kind"`
	Dir   string `json:"dir"` // CACHE/writable
	Lower string `json:"lower"`
	Upper string `json:"upper"`
}

// writableView is a daemon's writable view over its read-only mount.
type writableView struct {
	kind   string
	layout overlay.Layout
	mnt    string
	allow  bool
}

// prepareWritable makes the layers of a writable view before the read-only
// mount is made at its lower directory: the root of the view gets the
// source root's owner and mode when shared, and the mounting user's 0700
// otherwise (see package overlay). The snapshot the changes start from is
// kept beside them, unless an upper layer kept from an earlier mount
// already has one.
func prepareWritable(log zerolog.Logger, o *mountOptions, snap *snapshot.Snapshot, src, mnt string) (*writableView, error) {
	kind, err := overlay.Choose()
	if err != nil {
		return nil, withCode(exitMountFailed, err)
	}
	uid, gid, mode := uint32(os.Geteuid()), uint32(os.Getegid()), uint32(0o700)
	if o.allowOther {
		a := snap.Attr(0)
		uid, gid, mode = a.Uid, a.Gid, a.Mode
	}
	l, err := overlay.Prepare(o.cacheDir, uid, gid, mode)
	if err != nil {
		return nil, withCode(exitCacheDir, err)
	}
	if me, ok, _ := findMount(l.Lower); ok {
		if err := detach(l.Lower, true); err != nil {
			return nil, withCode(exitMounted, fmt.Errorf("%s holds a %s mount that could not be cleaned: %w", l.Lower, me.FSType, err))
		}
		log.Warn().Str("lower", l.Lower).Msg("cleaned a read-only layer left behind by a daemon that died")
	}
	files, bytes, _ := overlay.Usage(l.Upper)
	_, statErr := os.Stat(l.Base)
	if files > 0 && statErr == nil {
		log.Info().Int64("files", files).Int64("bytes", bytes).Msg("writable view: keeping the changes of an earlier mount and the snapshot they were made against")
	} else {
		info := snapshot.IndexInfo{Source: src, Host: hostname(), WalkStart: time.Now()}
		if _, err := snapshot.WriteIndex(l.Base, snap, info); err != nil {
			return nil, withCode(exitCacheDir, fmt.Errorf("writable view: saving the base snapshot: %w", err))
		}
	}
	return &writableView{kind: kind, layout: l, mnt: mnt, allow: o.allowOther}, nil
}

// checkWritable refuses --writable before anything is walked when no
// overlay can be mounted.
func checkWritable(o *mountOptions) error {
	if !o.writable {
		return nil
	}
	if _, err := overlay.Choose(); err != nil {
		return withCode(exitMountFailed, err)
	}
	return nil
}

// mount stacks the view at the user's mountpoint.
func (w *writableView) mount() error {
	if err := overlay.Mount(w.kind, w.layout, w.mnt, w.allow); err != nil {
		return withCode(exitMountFailed, err)
	}
	return nil
}

// unmount detaches the view, lazily: the daemon is stopping and the
// read-only layer below cannot go while the view holds it.
func (w *writableView) unmount(log zerolog.Logger) {
	if me, ok, _ := findMount(w.mnt); ok && overlay.IsWritableFSType(me.FSType) {
		if err := detach(w.mnt, true); err != nil {
			log.Error().Err(err).Msg("detaching the writable view failed")
		}
	}
}

// watch calls gone once the view is no longer mounted at its mountpoint
// (an administrator's umount, a cleaner's lazy detach), so the daemon does
// not serve a read-only layer nobody can reach. It returns when stop closes.
func (w *writableView) watch(stop <-chan struct{}, gone func()) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	for {
		// mountinfo flags POLLPRI on every change of the mount table; the
		// timeout only bounds how late stop is noticed.
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLPRI}}, 500)
		select {
		case <-stop:
			return
		default:
		}
		if me, ok, err := findMount(w.mnt); err == nil && !(ok && overlay.IsWritableFSType(me.FSType)) {
			gone()
			return
		}
		_, _ = f.Seek(0, 0)
		_, _ = io.Copy(io.Discard, f)
	}
}

func (w *writableView) record() *writableRecord {
	return &writableRecord{Kind: w.kind, Dir: w.layout.Dir, Lower: w.layout.Lower, Upper: w.layout.Upper}
}

func (w *writableView) describe() string {
	return fmt.Sprintf("writable (%s; changes in %s)", w.kind, w.layout.Upper)
}

// isWritableView reports whether a mountinfo entry is a writable view of
// cachefs's: a kernel overlay carries cachefs's name; fuse-overlayfs
// ignores the name it is given, so its view is known by this user's mount
// record (which a daemon that died leaves behind).
func isWritableView(me mountEntry) bool {
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
func unmountWritable(o *unmountOptions, mnt string, rec *record) error {
	if err := detach(mnt, o.lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return withCode(exitBusy, fmt.Errorf("%s is busy: processes have files open or a working directory on it (see 'fuser -vm %s'); close them, or use --lazy", mnt, mnt))
		}
		return withCode(exitInternal, err)
	}
	if rec == nil || rec.Writable == nil {
		return nil
	}
	if _, ok, _ := findMount(rec.Writable.Lower); ok {
		if err := detach(rec.Writable.Lower, true); err != nil && lowerMounted(rec.Writable.Lower) {
			return withCode(exitInternal, fmt.Errorf("unmounting the read-only layer %s: %w", rec.Writable.Lower, err))
		}
	}
	return nil
}

// lowerMounted reports whether a read-only layer is still mounted: the
// daemon detaches it itself once it sees its view go.
func lowerMounted(lower string) bool {
	_, ok, _ := findMount(lower)
	return ok
}

// settleUpper says what happens to the changes after an unmount: kept for
// the next mount over the same cache directory, or discarded.
func settleUpper(w *writableRecord, keep, pushed bool) string {
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
func unmountView(ctx context.Context, g *globalOptions, o *unmountOptions, mnt string, rec *record) error {
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
		if dead, _ := readRecord(mnt); dead != nil && dead.Mountpoint == mnt && dead.Writable != nil && !processAlive(dead.Pid) {
			if lowerMounted(dead.Writable.Lower) {
				_ = detach(dead.Writable.Lower, true)
			}
			_ = os.Remove(recordPath(mnt))
			fmt.Printf("cachefs: cleaned %s: its daemon had died; the changes stay in %s for the next mount over that cache directory\n", mnt, dead.Writable.Upper)
			return nil
		}
		fmt.Printf("cachefs: unmounted %s\n", mnt)
		return nil
	}
	if err := waitDaemon(ctx, mnt, rec, o.timeout); err != nil {
		return err
	}
	fmt.Printf("cachefs: %s\n", settleUpper(rec.Writable, keep, o.push))
	return conflict
}

// writableStatus is what status reports of a writable view: the changes
// a push would consider (regular files in the upper layer).
type writableStatus struct {
	Upper string `json:"upper"`
	Files int64  `json:"files"`
	Bytes int64  `json:"bytes"`
}

func upperStatus(upper string) *writableStatus {
	if upper == "" {
		return nil
	}
	files, bytes, _ := overlay.Usage(upper)
	return &writableStatus{Upper: upper, Files: files, Bytes: bytes}
}
