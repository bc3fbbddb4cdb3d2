package fusefs

import (
	"syscall"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// The walk records POSIX ACLs and no other extended attribute (each would
// be one more source round trip per entry). A snapshot without any ACL
// answers the first GETXATTR and LISTXATTR with ENOSYS, which the kernel
// remembers for the mount: from then on getxattr, lgetxattr and listxattr
// fail with EOPNOTSUPP in the kernel, and ls -l costs no round trip per
// file. That is only right when no entry has an ACL: after ENOSYS the
// kernel would not ask for ACLs either. With ACLs, everything is answered
// from memory, and the kernel caches each inode's ACL.

// errNoXattrs is ENOSYS, the kernel's "never ask again".
const errNoXattrs = fuse.ENOSYS

func (t *rawFS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if !t.xattrs {
		return 0, errNoXattrs
	}
	idx, ok := t.entry(h.NodeId)
	if !ok {
		return 0, errStale
	}
	acl := t.snap.ACL(idx)
	var v []byte
	switch attr {
	case snapshot.XattrACLAccess:
		v = acl.Access
	case snapshot.XattrACLDefault:
		v = acl.Default
	}
	if v == nil {
		return 0, fuse.ENODATA
	}
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// ListXAttr names the ACLs the entry has, NUL-terminated as listxattr(2)
// returns them.
func (t *rawFS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if !t.xattrs {
		return 0, errNoXattrs
	}
	idx, ok := t.entry(h.NodeId)
	if !ok {
		return 0, errStale
	}
	acl := t.snap.ACL(idx)
	var list []byte
	if acl.Access != nil {
		list = append(append(list, snapshot.XattrACLAccess...), 0)
	}
	if acl.Default != nil {
		list = append(append(list, snapshot.XattrACLDefault...), 0)
	}
	if len(dest) < len(list) {
		return uint32(len(list)), fuse.ERANGE
	}
	return uint32(copy(dest, list)), fuse.OK
}

func (t *rawFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return fuse.Status(syscall.EROFS)
}

func (t *rawFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return fuse.Status(syscall.EROFS)
}
