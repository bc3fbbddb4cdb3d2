package daemon

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/overlay"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// writableView is a daemon's writable view over its read-only mount.
type writableView struct {
	kind   string
	layout overlay.Layout
	mnt    string
	allow  bool
}

// CheckWritable refuses --writable before anything is walked when no
// overlay can be mounted.
func CheckWritable() error {
	if _, err := overlay.Choose(); err != nil {
		return fail(ErrMountFailed, err)
	}
	return nil
}

// prepareWritable makes the layers of a writable view before the read-only
// mount is made at its lower directory: the root of the view gets the
// source root's owner and mode when shared, and the mounting user's 0700
// otherwise (see package overlay). The snapshot the changes start from is
// kept beside them, unless an upper layer kept from an earlier mount
// already has one.
func prepareWritable(log zerolog.Logger, c *Config, snap *snapshot.Snapshot) (*writableView, error) {
	kind, err := overlay.Choose()
	if err != nil {
		return nil, fail(ErrMountFailed, err)
	}
	uid, gid, mode := uint32(os.Geteuid()), uint32(os.Getegid()), uint32(0o700)
	if c.AllowOther {
		a := snap.Attr(0)
		uid, gid, mode = a.Uid, a.Gid, a.Mode
	}
	l, err := overlay.Prepare(c.CacheDir, uid, gid, mode)
	if err != nil {
		return nil, fail(ErrCacheDir, err)
	}
	if me, ok, _ := mounttable.Find(l.Lower); ok {
		if err := mounttable.Detach(l.Lower, true); err != nil {
			return nil, fail(ErrMounted, fmt.Errorf("%s holds a %s mount that could not be cleaned: %w", l.Lower, me.FSType, err))
		}
		log.Warn().Str("lower", l.Lower).Msg("cleaned a read-only layer left behind by a daemon that died")
	}
	if err := keepBase(log, l, snap, c.Source); err != nil {
		return nil, err
	}
	return &writableView{kind: kind, layout: l, mnt: c.Mountpoint, allow: c.AllowOther}, nil
}

// keepBase saves the snapshot the changes are made against, unless changes
// kept from an earlier mount come with theirs.
func keepBase(log zerolog.Logger, l overlay.Layout, snap *snapshot.Snapshot, src string) error {
	files, bytes, _ := overlay.Usage(l.Upper)
	_, statErr := os.Stat(l.Base)
	if files > 0 && statErr == nil {
		log.Info().Int64("files", files).Int64("bytes", bytes).Msg("writable view: keeping the changes of an earlier mount and the snapshot they were made against")
		return nil
	}
	info := snapshot.IndexInfo{Source: src, Host: Hostname(), WalkStart: time.Now()}
	if _, err := snapshot.WriteIndex(l.Base, snap, info); err != nil {
		return fail(ErrCacheDir, fmt.Errorf("writable view: saving the base snapshot: %w", err))
	}
	return nil
}

// mount stacks the view at the user's mountpoint.
func (w *writableView) mount() error {
	if err := overlay.Mount(w.kind, w.layout, w.mnt, w.allow); err != nil {
		return fail(ErrMountFailed, err)
	}
	return nil
}

// unmount detaches the view, lazily: the daemon is stopping and the
// read-only layer below cannot go while the view holds it.
func (w *writableView) unmount(log zerolog.Logger) {
	if me, ok, _ := mounttable.Find(w.mnt); ok && overlay.IsWritableFSType(me.FSType) {
		if err := mounttable.Detach(w.mnt, true); err != nil {
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
		if me, ok, err := mounttable.Find(w.mnt); err == nil && !(ok && overlay.IsWritableFSType(me.FSType)) {
			gone()
			return
		}
		_, _ = f.Seek(0, 0)
		_, _ = io.Copy(io.Discard, f)
	}
}

func (w *writableView) record() *control.WritableRecord {
	return &control.WritableRecord{Kind: w.kind, Dir: w.layout.Dir, Lower: w.layout.Lower, Upper: w.layout.Upper}
}

func (w *writableView) describe() string {
	return fmt.Sprintf("writable (%s; changes in %s)", w.kind, w.layout.Upper)
}

// upperStatus counts the changes not pushed yet; nil without a view.
func upperStatus(upper string) *control.WritableStatus {
	if upper == "" {
		return nil
	}
	files, bytes, _ := overlay.Usage(upper)
	return &control.WritableStatus{Upper: upper, Files: files, Bytes: bytes}
}
