// Package peer lets the nodes of one job share the blocks they fetch, so
// the shared filesystem serves each block of the tree about once per job
// instead of once per node.
//
// # Shape
//
// A Node sits below blockcache as its Source: blockcache asks it for the
// bytes of one block it is missing, and keeps what it gets, exactly as it
// keeps what the source gives. Each block (file identity plus block
// number) has one owner among the job's nodes, chosen by rendezvous hashing
// over the list every node was given. A node that misses a block it does
// not own asks the owner over HTTP; the owner answers from its own cache,
// filling it from the source first if need be. The owner's blockcache
// de-duplicates fetches per block, so however many peers and local readers
// ask at once the source is read once; the asking node's blockcache does
// the same on its side. Reads that hit a node's cache never reach this
// package at all.
//
// # Invariants
//
//   - Every request carries an HMAC-SHA256, under the job's shared secret,
//     of its time, a nonce and the block it names; a request that fails
//     the check, or is more than Window old or early, gets 403 and no
//     bytes, logged once per source address.
//   - An owner serves only blocks it owns, of files in its snapshot with
//     the identity (inode, size, mtime) the request names, that its own
//     credentials may read by the snapshot's modes and owners; never a
//     path outside the snapshot, never a block it would have to ask
//     another peer for.
//   - A block from a peer is used only if its length is the block's, its
//     CRC-32C is the one the owner sent, and the owner's MAC (GMAC under a
//     key derived from the secret, the request's MAC and the CRC) binds
//     those bytes to this very request (and so to the identity asked
//     for); anything else is dropped and the source is read instead. The
//     CRC alone would not do: anyone can make bytes with a given CRC.
//   - Every peer request has a deadline (Config.Timeout). A peer that
//     fails, is slow or refuses is avoided for Config.Backoff and its
//     blocks are read from the source meanwhile: a dead peer costs the job
//     source reads, never a failed or stuck read.
//   - Prefetching is split by ownership (Node.Prefetches): a node
//     prefetches the blocks it owns and those of owners avoided now, so no
//     prefetch reaches another node, and the others' first reads of the
//     blocks it owns find them in its cache.
//   - Reads that are not exactly one block (blockcache reading only what a
//     reader asked for, with its budget full) go to the source.
//
// # Trust
//
// Peers of the same job hold the same secret and are trusted as the job
// itself: an owner can serve wrong bytes that carry a matching CRC and
// MAC. See docs/security.md for what a peer can and cannot do.
package peer
