package push

import "golang.org/x/sys/unix"

// mknodWhiteout makes what overlayfs makes for a deleted name: a
// character device 0/0 with no permission bits.
func mknodWhiteout(p string) error { return unix.Mknod(p, unix.S_IFCHR, 0) }
