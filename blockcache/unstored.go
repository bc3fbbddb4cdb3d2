package blockcache

import "sync"

// unstoredKeep is how many blocks served without being stored are kept
// in memory. A block is fetched whole to be stored; when storing is then
// refused (the budget filled while it was read, or the cache disk failed)
// the reader still reads the rest of that block, a request at a time, and
// each of those would go back to the source. A few blocks cover the
// readers in flight at such a moment, and bound the memory to a few
// blocks whatever the number of open files.
const unstoredKeep = 8

// unstoredBlocks remembers the last blocks served unstored, oldest first
// out.
type unstoredBlocks struct {
	mu   sync.Mutex
	next int
	ring [unstoredKeep]unstoredBlock
}

type unstoredBlock struct {
	st  *fileState
	b   int64
	buf []byte
}

func (u *unstoredBlocks) put(st *fileState, b int64, buf []byte) {
	u.mu.Lock()
	u.ring[u.next] = unstoredBlock{st, b, buf}
	u.next = (u.next + 1) % unstoredKeep
	u.mu.Unlock()
}

// get returns block b of st if it is kept. The slice is shared and must
// not be written to.
func (u *unstoredBlocks) get(st *fileState, b int64) []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, e := range u.ring {
		if e.st == st && e.b == b && e.buf != nil {
			return e.buf
		}
	}
	return nil
}
