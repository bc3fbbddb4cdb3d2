package peer

import (
	"strconv"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cespare/xxhash/v2"
	rendezvous "github.com/dgryski/go-rendezvous"
)

// ring maps blocks to their owners. Rendezvous hashing rather than a
// consistent-hash ring: with tens of nodes a lookup hashing the key once
// per node costs well under a microsecond, needs no virtual nodes to
// balance, and when a node is removed only its own blocks move.
type ring struct {
	r *rendezvous.Rendezvous
}

func newRing(nodes []string) *ring {
	return &ring{r: rendezvous.New(nodes, xxhash.Sum64String)}
}

// owner returns the node that owns block b of key.
func (g *ring) owner(key blockcache.Key, b int64) string {
	return g.r.Lookup(blockName(key, b))
}

// blockName is the key hashed for ownership: the whole identity, so a
// changed file's blocks land on other owners than the old version's.
func blockName(key blockcache.Key, b int64) string {
	buf := make([]byte, 0, len(key.Path)+64)
	buf = strconv.AppendUint(buf, key.Ino, 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, key.Size, 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, key.Mtime, 10)
	buf = append(buf, 0)
	buf = strconv.AppendInt(buf, b, 10)
	buf = append(buf, 0)
	buf = append(buf, key.Path...)
	return string(buf)
}
