package daemon

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/cachefs/cachefs/blockcache"
	"github.com/cachefs/cachefs/peer"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// PeerConfig makes a mount share blocks with the other nodes of its job.
// The CLI expands the list and finds this node in it; the daemon loads the
// secret (creating it if missing) and binds the address.
type PeerConfig struct {
	Self       string   // this node's host:port as it appears in Peers
	Peers      []string // every node of the job, Self included
	Listen     string   // the address this node serves its peers on
	SecretFile string   // absolute
	Timeout    time.Duration
}

// peers is a mount's peer node and the listener it serves on once the
// snapshot exists; requests that come before wait in the listen queue.
type peers struct {
	node *peer.Node
	ln   net.Listener
}

// sharePeers returns local unchanged without peers, and otherwise the peer
// node that asks the job's other nodes before local. It binds the listen
// address now, so a port in use fails the mount before the walk.
func sharePeers(log zerolog.Logger, c *Config, local blockcache.Source) (blockcache.Source, *peers, error) {
	pc := c.Peers
	if pc == nil {
		return local, nil, nil
	}
	secret, err := peer.LoadSecret(pc.SecretFile)
	if err != nil {
		return nil, nil, fail(ErrPeers, fmt.Errorf("--peer-secret-file: %w", err))
	}
	node, err := peer.New(peer.Config{Self: pc.Self, Peers: pc.Peers, Secret: secret, BlockSize: c.BlockSize,
		Timeout: pc.Timeout, Logger: log.With().Str("component", "peer").Logger()}, local)
	if err != nil {
		return nil, nil, fail(ErrPeers, err)
	}
	ln, err := net.Listen("tcp", pc.Listen)
	if err != nil {
		return nil, nil, fail(ErrPeers, fmt.Errorf("--listen: %w", err))
	}
	log.Info().Str("self", pc.Self).Strs("peers", pc.Peers).Msg("sharing blocks with peers")
	return node, &peers{node: node, ln: ln}, nil
}

// serve answers peers from snap and cache until the returned func is
// called; p may be nil.
func (p *peers) serve(log zerolog.Logger, snap *snapshot.Snapshot, cache *blockcache.Cache) (stop func()) {
	if p == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.node.Serve(ctx, p.ln, peer.SnapshotFiles{Snap: snap}, peer.CacheBlocks{Cache: cache}); err != nil {
			log.Error().Err(err).Msg("peer server stopped")
		}
	}()
	return func() {
		cancel()
		<-done
		p.node.Close()
	}
}

// close releases a listener never served, after a failure before serving.
func (p *peers) close() {
	if p != nil {
		_ = p.ln.Close() // nothing was served on it; its error says nothing
		p.node.Close()
	}
}

// prefetchBlock is the cache's filter of what to prefetch: nil, all,
// without peers.
func (p *peers) prefetchBlock() func(blockcache.Key, int64) bool {
	if p == nil {
		return nil
	}
	return p.node.Prefetches
}

// stats is the node's traffic for status, nil without peers.
func (p *peers) stats() *peer.Stats {
	if p == nil {
		return nil
	}
	s := p.node.Stats()
	return &s
}
