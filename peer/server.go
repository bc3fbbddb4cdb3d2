package peer

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cachefs/cachefs/blockcache"
)

// Files tells the server what the snapshot holds.
type Files interface {
	// Check returns nil if key names a regular file of the snapshot, with
	// exactly that identity, that cred may read.
	Check(key blockcache.Key, cred *Cred) error
}

// Sentinels of Files.Check.
var (
	ErrNotInSnapshot = errors.New("peer: no such file in the snapshot")
	ErrDenied        = errors.New("peer: file not readable with this node's credentials")
)

// Blocks reads one block through the node's cache, filling it from the
// source if it is missing.
type Blocks interface {
	ReadBlock(ctx context.Context, key blockcache.Key, p []byte, off int64) error
}

// CacheBlocks serves blocks from a blockcache.Cache.
type CacheBlocks struct{ Cache *blockcache.Cache }

// ReadBlock implements Blocks. A handle of its own per request: its first
// read starts no read-ahead, so serving one block fetches one block.
func (c CacheBlocks) ReadBlock(ctx context.Context, key blockcache.Key, p []byte, off int64) error {
	h, err := c.Cache.OpenFile(key)
	if err != nil {
		return err
	}
	defer h.Close()
	got, err := h.ReadAt(ctx, p, off)
	if err == nil && got != len(p) {
		err = fmt.Errorf("%s: %d bytes at %d, want %d: %w", key.Path, got, off, len(p), blockcache.ErrChanged)
	}
	return err
}

// Serve answers peers on ln until ctx ends; it returns when the server
// has stopped.
func (n *Node) Serve(ctx context.Context, ln net.Listener, files Files, blocks Blocks) error {
	srv := &http.Server{
		Handler:           n.Handler(files, blocks),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			n.log.Warn().Err(err).Msg("peer requests still running at shutdown were cut off")
		}
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Handler returns the peer protocol's HTTP handler.
func (n *Node) Handler(files Files, blocks Blocks) http.Handler {
	s := &server{n: n, files: files, blocks: blocks}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/block", s.block)
	mux.HandleFunc("/", s.unknown)
	return mux
}

type server struct {
	n      *Node
	files  Files
	blocks Blocks
	said   sync.Map // remote IPs already logged as refused
	// bufs holds block-sized buffers: a fresh one per request cost the
	// zeroing of a whole block, a tenth of a peer hit's CPU.
	bufs sync.Pool
}

func (s *server) buffer() *[]byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, s.n.cfg.BlockSize)
	return &b
}

func (s *server) unknown(w http.ResponseWriter, r *http.Request) {
	s.refuse(w, r, errors.New("unknown request"))
}

// refuse answers 403 with no body and logs once per remote address.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	s.n.stats.refused.Add(1)
	ip := hostOf(r.RemoteAddr)
	if _, seen := s.said.LoadOrStore(ip, true); !seen {
		s.n.log.Warn().Str("from", ip).Str("uri", r.URL.RequestURI()).Err(err).Msg("peer request refused (logged once per address)")
	}
	w.WriteHeader(http.StatusForbidden)
}

func (s *server) block(w http.ResponseWriter, r *http.Request) {
	q := r.URL.RawQuery
	if err := s.n.sign.checkRequest(q, r.Header.Get(hdrTime), r.Header.Get(hdrNonce), r.Header.Get(hdrAuth), timeNow()); err != nil {
		s.refuse(w, r, err)
		return
	}
	key, b, bs, err := parseQuery(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if code, err := s.admit(key, b, bs); err != nil {
		s.n.log.Debug().Str("from", r.RemoteAddr).Str("path", key.Path).Int64("block", b).Err(err).Msg("peer request not served")
		if code == http.StatusForbidden {
			w.Header().Set(hdrDenied, "1")
		}
		w.WriteHeader(code)
		return
	}
	off := b * bs
	buf := s.buffer()
	defer s.bufs.Put(buf)
	p := (*buf)[:min(bs, key.Size-off)]
	if err := s.blocks.ReadBlock(r.Context(), key, p, off); err != nil {
		s.n.log.Warn().Str("from", r.RemoteAddr).Str("path", key.Path).Int64("block", b).Err(err).Msg("cannot serve block to peer")
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	sum := fmt.Sprintf("%08x", crc32.Checksum(p, castagnoli))
	h := w.Header()
	h.Set(hdrSum, sum)
	h.Set(hdrAuth, s.n.sign.response(r.Header.Get(hdrAuth), sum, p))
	h.Set("Content-Length", strconv.Itoa(len(p)))
	h.Set("Content-Type", "application/octet-stream")
	// Counted before the write: the asker may have all the bytes before
	// Write returns here.
	s.n.stats.addServed(hostOf(r.RemoteAddr), int64(len(p)))
	// An asker that hung up has nothing to hear; its side checks what it got.
	_, _ = w.Write(p)
}

// admit decides whether this node serves block b of key, and the status
// to answer if not. Only blocks it owns: a block it would have to fetch
// from another peer is the asker's to fetch, and refusing it keeps any
// request to one hop.
func (s *server) admit(key blockcache.Key, b, bs int64) (int, error) {
	if bs != s.n.cfg.BlockSize {
		return http.StatusConflict, fmt.Errorf("block size %d, this node uses %d", bs, s.n.cfg.BlockSize)
	}
	// Compared by division: b*bs could overflow.
	if b < 0 || key.Size <= 0 || b > (key.Size-1)/bs {
		return http.StatusNotFound, fmt.Errorf("block %d out of range", b)
	}
	if o := s.n.ring.owner(key, b); o != s.n.cfg.Self {
		return http.StatusMisdirectedRequest, fmt.Errorf("owned by %s", o)
	}
	if err := s.files.Check(key, s.n.cfg.Cred); err != nil {
		if errors.Is(err, ErrDenied) {
			return http.StatusForbidden, err
		}
		return http.StatusNotFound, err
	}
	return 0, nil
}

func parseQuery(r *http.Request) (key blockcache.Key, b, bs int64, err error) {
	v := r.URL.Query()
	key.Path = v.Get("p")
	var errs []error
	num := func(name string) int64 {
		x, e := strconv.ParseInt(v.Get(name), 10, 64)
		errs = append(errs, e)
		return x
	}
	ino, e := strconv.ParseUint(v.Get("i"), 10, 64)
	errs = append(errs, e)
	key.Ino = ino
	key.Size, key.Mtime, b, bs = num("s"), num("m"), num("b"), num("bs")
	if err = errors.Join(errs...); err == nil && (bs <= 0 || key.Path == "") {
		err = errors.New("empty path or block size")
	}
	return key, b, bs, err
}
