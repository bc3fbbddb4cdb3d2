// Package ident holds the identity of a source file as cachefs shows it,
// shared by the snapshot, which records it, and the block cache, which
// compares a file against it before fetching, without either importing
// the other.
package ident

// MixIno is the inode number a mount shows for (dev, ino). Entries on the
// root's device keep their number; others get one derived from both, with
// the top bit set so it cannot collide with the root device's numbers in
// practice. Content fetches use it to compare a file's identity.
func MixIno(dev, ino, rootDev uint64) uint64 {
	if dev == rootDev {
		return ino
	}
	h := (dev*0x9E3779B97F4A7C15 ^ ino) * 0xBF58476D1CE4E5B9
	return h | 1<<63
}
