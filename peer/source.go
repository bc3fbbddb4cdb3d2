package peer

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"golang.org/x/sys/unix"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// timeNow is the clock; tests move it.
var timeNow = time.Now

// Open implements blockcache.Source. It opens nothing yet: a file whose
// blocks all come from peers never costs the shared filesystem an open.
// The local file is opened, and its identity checked, at the first read
// the peers do not serve.
func (n *Node) Open(key blockcache.Key) (blockcache.SourceFile, error) {
	return &file{n: n, key: key}, nil
}

// file is one source file as blockcache sees it.
type file struct {
	n   *Node
	key blockcache.Key

	mu    sync.Mutex
	local blockcache.SourceFile
}

// ReadAt fills p from the block's owner when p is exactly one block owned
// by another node, and from the source otherwise or if the owner fails.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if b, ok := f.wholeBlock(p, off); ok {
		if owner := f.n.ring.owner(f.key, b); owner != f.n.cfg.Self {
			if f.n.fromOwner(owner, f.key, b, p) {
				return len(p), nil
			}
		}
	}
	return f.readLocal(p, off)
}

// wholeBlock reports whether p at off is exactly block b.
func (f *file) wholeBlock(p []byte, off int64) (int64, bool) {
	bs := f.n.cfg.BlockSize
	if off%bs != 0 || off >= f.key.Size {
		return 0, false
	}
	return off / bs, int64(len(p)) == min(bs, f.key.Size-off)
}

func (f *file) readLocal(p []byte, off int64) (int, error) {
	src, err := f.open()
	if err != nil {
		return 0, err
	}
	got, err := src.ReadAt(p, off)
	f.n.stats.fromSource.Add(int64(got))
	return got, err
}

func (f *file) open() (blockcache.SourceFile, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.local == nil {
		src, err := f.n.local.Open(f.key)
		if err != nil {
			return nil, err
		}
		noReadahead(src)
		f.local = src
	}
	return f.local, nil
}

func (f *file) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.local == nil {
		return nil
	}
	err := f.local.Close()
	f.local = nil
	return err
}

// fromOwner asks owner for block b of key into p; false means the caller
// reads the source. Failures are logged once per outage of the peer.
func (n *Node) fromOwner(owner string, key blockcache.Key, b int64, p []byte) bool {
	ps := n.peers[owner]
	if ps == nil || !ps.usable(timeNow()) {
		return false
	}
	err := n.fetch(owner, key, b, p)
	if err == nil {
		ps.worked()
		ps.fromPeer.Add(int64(len(p)))
		n.stats.fromPeers.Add(int64(len(p)))
		return true
	}
	var na notAvailable
	if errors.As(err, &na) {
		// The owner is fine but cannot serve this file: another snapshot,
		// or a file its credentials may not read. Not a reason to avoid it.
		n.log.Debug().Str("peer", owner).Str("path", key.Path).Int64("block", b).Err(err).Msg("peer cannot serve block; reading the source")
		return false
	}
	ps.failures.Add(1)
	if errors.Is(err, errBadResponse) || errors.Is(err, ErrUnauthorized) {
		n.stats.rejected.Add(1)
	}
	if ps.failed(timeNow(), n.cfg.Backoff, errors.Is(err, context.DeadlineExceeded)) {
		n.log.Warn().Str("peer", owner).Str("path", key.Path).Int64("block", b).Err(err).
			Dur("avoided_for", n.cfg.Backoff).Msg("peer failed; reading its blocks from the source for a while")
	}
	return false
}

// errBadResponse means a peer's answer did not hold up: wrong length,
// checksum or MAC.
var errBadResponse = errors.New("peer: response refused")

// notAvailable is a peer's well-formed refusal to serve one block.
type notAvailable struct{ status int }

func (e notAvailable) Error() string { return "peer answered " + http.StatusText(e.status) }

// query encodes a block request. The order is fixed, because the MAC
// covers the query string exactly as sent.
func query(key blockcache.Key, b, bs int64) string {
	return "p=" + url.QueryEscape(key.Path) +
		"&i=" + strconv.FormatUint(key.Ino, 10) +
		"&s=" + strconv.FormatInt(key.Size, 10) +
		"&m=" + strconv.FormatInt(key.Mtime, 10) +
		"&b=" + strconv.FormatInt(b, 10) +
		"&bs=" + strconv.FormatInt(bs, 10)
}

func (n *Node) fetch(owner string, key blockcache.Key, b int64, p []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Timeout)
	defer cancel()
	q := query(key, b, n.cfg.BlockSize)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+owner+"/v1/block?"+q, nil)
	if err != nil {
		return err
	}
	ts, nonce, mac := n.sign.request(q, timeNow())
	req.Header.Set(hdrTime, ts)
	req.Header.Set(hdrNonce, nonce)
	req.Header.Set(hdrAuth, mac)
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusForbidden, http.StatusMisdirectedRequest, http.StatusConflict:
		if resp.StatusCode == http.StatusForbidden && resp.Header.Get(hdrDenied) == "" {
			// Our secret was refused: the peer is of another job, or
			// the secret files differ.
			return fmt.Errorf("%w: %s refused our request", ErrUnauthorized, owner)
		}
		return notAvailable{resp.StatusCode}
	default:
		return fmt.Errorf("peer %s: %s", owner, resp.Status)
	}
	return n.readBody(resp, mac, p)
}

// readBody reads exactly len(p) bytes into p and checks them against the
// owner's checksum and MAC before p may be used.
func (n *Node) readBody(resp *http.Response, reqMAC string, p []byte) error {
	if resp.ContentLength != int64(len(p)) {
		return fmt.Errorf("%w: %d bytes announced, block has %d", errBadResponse, resp.ContentLength, len(p))
	}
	if _, err := io.ReadFull(resp.Body, p); err != nil {
		return fmt.Errorf("%w: %w", errBadResponse, err)
	}
	sum := resp.Header.Get(hdrSum)
	want, err := hex.DecodeString(sum)
	if err != nil || len(want) != 4 {
		return fmt.Errorf("%w: no checksum", errBadResponse)
	}
	got := crc32.Checksum(p, castagnoli)
	if uint32(want[0])<<24|uint32(want[1])<<16|uint32(want[2])<<8|uint32(want[3]) != got {
		return fmt.Errorf("%w: CRC-32C %08x, owner sent %s", errBadResponse, got, sum)
	}
	if err := n.sign.checkResponse(reqMAC, sum, p, resp.Header.Get(hdrAuth)); err != nil {
		return fmt.Errorf("%w: %w", errBadResponse, err)
	}
	return nil
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// noReadahead turns off the kernel's read-ahead on a source file. The
// blocks after this one are mostly other nodes' to fetch, so pages read
// ahead would be read from the shared filesystem for nothing.
func noReadahead(f blockcache.SourceFile) {
	if fd, ok := f.(interface{ Fd() uintptr }); ok {
		_ = unix.Fadvise(int(fd.Fd()), 0, 0, unix.FADV_RANDOM)
	}
}
