package peer

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/rs/zerolog"
)

// ErrConfig means a Config cannot work.
var ErrConfig = errors.New("peer: bad configuration")

// Config describes this node and its job.
type Config struct {
	Self      string   // this node's host:port as it appears in Peers
	Peers     []string // every node of the job, host:port, Self included
	Secret    []byte   // the job's shared secret (LoadSecret)
	BlockSize int64    // must be the same on every node
	// Timeout bounds each request to a peer, the owner's own source read
	// included; default 1 s.
	Timeout time.Duration
	// Backoff is how long a peer that failed is left alone; default 10 s.
	Backoff time.Duration
	// Cred is whose read permission the server checks against the
	// snapshot; default the process's effective uid, gid and groups.
	Cred   *Cred
	Logger zerolog.Logger
}

// Node is one node's side of the job: a blockcache.Source that asks the
// owners of missing blocks first, and the server that answers other
// nodes. Safe for concurrent use.
type Node struct {
	cfg    Config
	local  blockcache.Source
	ring   *ring
	sign   signer
	client *http.Client
	log    zerolog.Logger
	stats  stats
	// peers is filled by New and only read after, so it needs no lock.
	peers map[string]*peerState // by host:port, Self excluded
}

var _ blockcache.Source = (*Node)(nil)

// New returns a Node that reads from local whatever its peers cannot give.
func New(cfg Config, local blockcache.Source) (*Node, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 10 * time.Second
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Cred == nil {
		c, err := ProcessCred()
		if err != nil {
			return nil, err
		}
		cfg.Cred = c
	}
	n := &Node{cfg: cfg, local: local, ring: newRing(cfg.Peers), sign: signer{cfg.Secret},
		log: cfg.Logger, peers: map[string]*peerState{}}
	n.client = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
	for _, p := range cfg.Peers {
		if p != cfg.Self {
			n.peers[p] = &peerState{addr: p}
		}
	}
	return n, nil
}

func (c *Config) check() error {
	switch {
	case len(c.Secret) < minSecret:
		return fmt.Errorf("%w: a secret of at least %d bytes is required", ErrConfig, minSecret)
	case c.BlockSize <= 0:
		return fmt.Errorf("%w: block size %d", ErrConfig, c.BlockSize)
	case !slices.Contains(c.Peers, c.Self):
		return fmt.Errorf("%w: this node (%s) is not in the peer list %v", ErrConfig, c.Self, c.Peers)
	}
	seen := map[string]bool{}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return fmt.Errorf("%w: peer %q: want host:port", ErrConfig, p)
		}
		if seen[p] {
			return fmt.Errorf("%w: peer %s listed twice", ErrConfig, p)
		}
		seen[p] = true
	}
	return nil
}

// Prefetches reports whether this node should prefetch block b of key:
// the blocks it owns, and those of owners avoided now. The rest the owners
// prefetch, so a node's first read of them is a hit in the owner's cache,
// and no node's background work reaches the others as demand reads.
func (n *Node) Prefetches(key blockcache.Key, b int64) bool {
	owner := n.ring.owner(key, b)
	if owner == n.cfg.Self {
		return true
	}
	ps := n.peers[owner]
	return ps == nil || !ps.usable(timeNow())
}

// Close releases idle connections.
func (n *Node) Close() { n.client.CloseIdleConnections() }

// peerState tracks one other node's health and traffic.
type peerState struct {
	addr      string
	mu        sync.Mutex
	downUntil time.Time
	said      bool // the log said it is avoided; reset when it answers
	strikes   int  // failures since it last answered
	traffic
}

// usable reports whether p may be asked now.
func (p *peerState) usable(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now.After(p.downUntil)
}

// slowStrikes is how many deadlines in a row make a peer avoided. A
// deadline may mean a busy owner waiting on the source rather than a dead
// one, and avoiding a live owner sends all its blocks to the source; a
// peer that refuses connections or answers badly is avoided at once.
const slowStrikes = 3

// failed records a failure, slow when the deadline passed; it reports
// whether p is now avoided for the first time since it last worked, so the
// caller logs once per outage.
func (p *peerState) failed(now time.Time, backoff time.Duration, slow bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.strikes++; slow && p.strikes < slowStrikes {
		return false
	}
	p.downUntil = now.Add(backoff)
	first := !p.said
	p.said = true
	return first
}

func (p *peerState) worked() {
	p.mu.Lock()
	p.said = false
	p.strikes = 0
	p.mu.Unlock()
}
