package push

import (
	"context"
	"errors"
	"os"
	"path"

	"golang.org/x/sys/unix"
)

// beneath confines resolution to the directory and refuses every symlink,
// /proc magic links included.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDir opens the directory name in parent, refusing a symlink there.
// name is one component read from a directory listing, so O_NOFOLLOW is
// the whole defence where openat2 is missing.
func openDir(parent int, name string) (int, error) {
	how := unix.OpenHow{Flags: dirFlags, Resolve: beneath}
	for {
		fd, err := unix.Openat2(parent, name, &how)
		switch err {
		case unix.EINTR:
			continue
		case unix.ENOSYS:
			return unix.Openat(parent, name, dirFlags, 0)
		}
		return fd, err
	}
}

// subdir makes or checks the target directory of an upper directory and
// pushes into it.
func (p *pusher) subdir(ctx context.Context, up, tfd int, dirRel string, e upperEntry, base uint32, inBase bool) error {
	rel := path.Join(dirRel, e.name)
	if excluded(p.o.Exclude, rel) || excluded(p.o.Exclude, rel+"/") {
		p.note(Entry{Path: rel + "/", Action: Excluded})
		return nil
	}
	ufd, err := unix.Openat(up, e.name, dirFlags, 0)
	if err != nil {
		p.note(Entry{Path: rel + "/", Action: Failed, Error: err.Error()})
		return nil
	}
	defer unix.Close(ufd)
	bi, ba := p.baseAttr(base, inBase, e.name)
	child, err := p.targetDir(tfd, rel, e)
	if errors.Is(err, unix.EROFS) {
		return ErrReadOnly
	}
	if err != nil {
		p.note(Entry{Path: rel + "/", Action: Failed, Error: err.Error()})
		return nil
	}
	if child >= 0 {
		defer unix.Close(child)
	}
	return p.dir(ctx, ufd, child, rel, bi, ba != nil && ba.IsDir())
}

// targetDir opens the target of an upper directory, creating it with the
// upper directory's mode (and owner, as root) if missing. In a dry run a
// missing one is reported and -1 returned.
func (p *pusher) targetDir(tfd int, rel string, e upperEntry) (int, error) {
	if tfd < 0 {
		p.note(Entry{Path: rel + "/", Action: Created})
		return -1, nil
	}
	fd, err := openDir(tfd, e.name)
	if err != unix.ENOENT {
		if err == unix.ELOOP || err == unix.ENOTDIR || err == unix.EXDEV {
			return -1, ErrUnsafe
		}
		return fd, err
	}
	if p.o.DryRun {
		p.note(Entry{Path: rel + "/", Action: Created})
		return -1, nil
	}
	merr := unix.Mkdirat(tfd, e.name, e.st.Mode&0o7777)
	if merr != nil && merr != unix.EEXIST {
		return -1, merr
	}
	if fd, err = openDir(tfd, e.name); err != nil {
		return -1, err
	}
	if merr == nil {
		// Ours alone: another push that made it first keeps its own.
		if os.Geteuid() == 0 {
			_ = unix.Fchown(fd, int(e.st.Uid), int(e.st.Gid))
		}
		_ = unix.Fchmod(fd, e.st.Mode&0o7777)
		p.note(Entry{Path: rel + "/", Action: Created})
	}
	return fd, nil
}
