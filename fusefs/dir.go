package fusefs

import (
	"github.com/cachefs/cachefs/snapshot"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// Directories are listed from the snapshot with no handle: a directory's
// stream is "." and "..", as a local filesystem lists them, then its
// children in snapshot order, and an offset is a stream position plus one
// (0 means the start). Any offset the kernel sends back is therefore exact,
// and a listing costs the daemon no state.
//
// Nor does a listing cost an OPENDIR or RELEASEDIR round trip: OPENDIR
// answers ENOSYS, which a kernel that offers FUSE_NO_OPENDIR_SUPPORT
// (Linux 5.1) takes for "open directories yourself from now on", opening
// them as if told FOPEN_KEEP_CACHE|FOPEN_CACHE_DIR, so listings still stay
// in the kernel's cache. A cold scan then costs two READDIRPLUS per
// directory (entries, then the empty reply that ends the listing) instead
// of five requests.

// capNoOpendirSupport is FUSE_NO_OPENDIR_SUPPORT of the kernel's INIT flags,
// which go-fuse does not name.
const capNoOpendirSupport = 1 << 24

func (t *rawFS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	idx, ok := t.entry(in.NodeId)
	if !ok {
		return errStale
	}
	if t.snap.Mode(idx)&snapshot.ModeType != snapshot.ModeDir {
		return fuse.ENOTDIR
	}
	if t.srv.KernelSettings().Flags64()&capNoOpendirSupport != 0 {
		return fuse.ENOSYS
	}
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (t *rawFS) ReleaseDir(in *fuse.ReleaseIn) {}

func (t *rawFS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return t.readDir(in, out, false)
}

// ReadDirPlus hands the kernel each child's entry and attributes along with
// its name, so a listing followed by stats costs one round trip per batch.
func (t *rawFS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return t.readDir(in, out, true)
}

func (t *rawFS) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	dir, ok := t.entry(in.NodeId)
	if !ok {
		return errStale
	}
	s := t.snap
	if l := t.m.onList; l != nil && in.Offset == 0 {
		// The start of a listing the kernel does not have cached.
		l(dir)
	}
	lo, hi := s.Children(dir)
	for pos := in.Offset; ; pos++ {
		var e fuse.DirEntry
		c := uint32(0)
		switch pos {
		case 0:
			e = fuse.DirEntry{Name: ".", Mode: snapshot.ModeDir, Ino: s.Ino(dir)}
		case 1:
			e = fuse.DirEntry{Name: "..", Mode: snapshot.ModeDir, Ino: s.Ino(s.Parent(dir))}
		default:
			if pos-2 >= uint64(hi-lo) {
				return fuse.OK
			}
			c = lo + uint32(pos-2)
			e = fuse.DirEntry{Name: t.name(c), Mode: s.Mode(c), Ino: s.Ino(c)}
		}
		e.Off = pos + 1
		if !plus {
			if !out.AddDirEntry(e) {
				return fuse.OK
			}
			continue
		}
		eo := out.AddDirLookupEntry(e)
		if eo == nil {
			return fuse.OK
		}
		// The kernel ignores the entries of "." and "..", and looks
		// nothing up for them; they stay zero.
		if pos >= 2 {
			t.fillEntry(eo, c)
		}
	}
}
