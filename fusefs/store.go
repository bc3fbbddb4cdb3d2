package fusefs

import "github.com/hanwen/go-fuse/v2/fuse"

// StoreCache hands the kernel data as the bytes of entry idx from offset
// 0, into the page cache, so reads of them are answered by the kernel with
// no round trip here; data must be exactly the file's bytes, checked.
// It reports false when the kernel holds no inode for idx (never looked up,
// or forgotten: a later lookup is the time to try again) or refused.
// It may block while the kernel reads those pages through this mount, so
// it must not be called from a request handler, nor with a lock that one
// takes.
func (m *Mount) StoreCache(idx uint32, data []byte) bool {
	return m.srv.InodeNotifyStoreCache(uint64(idx)+1, 0, data) == fuse.OK
}
