package peer

import (
	"sort"
	"sync"
	"sync/atomic"
)

// traffic counts one peer's exchanges with this node.
type traffic struct {
	fromPeer, failures atomic.Int64
}

// stats are the node's own counters.
type stats struct {
	fromSource, fromPeers, servedToPeers, refused, rejected atomic.Int64
	// served counts bytes served per requesting address (an IP: the
	// port a request comes from is not the peer's listening one).
	servedMu sync.Mutex
	served   map[string]int64
}

// Stats are a node's peer counters, for status and the unmount summary.
type Stats struct {
	Self            string      `json:"self"`
	BytesFromSource int64       `json:"bytes_from_source"` // block reads this node made itself
	BytesFromPeers  int64       `json:"bytes_from_peers"`
	BytesToPeers    int64       `json:"bytes_served_to_peers"`
	Refused         int64       `json:"requests_refused"`   // requests answered 403
	Rejected        int64       `json:"responses_rejected"` // peer answers dropped: bad length, CRC or MAC
	Peers           []PeerStats `json:"peers"`
}

// PeerStats are the figures of one other node.
type PeerStats struct {
	Addr     string `json:"addr"`
	FromPeer int64  `json:"bytes_from"`
	ServedTo int64  `json:"bytes_served_to"` // by the peer's IP address
	Failures int64  `json:"failures"`
	Avoided  bool   `json:"avoided"`
}

func (s *stats) addServed(addr string, n int64) {
	s.servedToPeers.Add(n)
	s.servedMu.Lock()
	if s.served == nil {
		s.served = map[string]int64{}
	}
	s.served[addr] += n
	s.servedMu.Unlock()
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := Stats{Self: n.cfg.Self, BytesFromSource: n.stats.fromSource.Load(),
		BytesFromPeers: n.stats.fromPeers.Load(), BytesToPeers: n.stats.servedToPeers.Load(),
		Refused: n.stats.refused.Load(), Rejected: n.stats.rejected.Load()}
	n.stats.servedMu.Lock()
	served := make(map[string]int64, len(n.stats.served))
	for k, v := range n.stats.served {
		served[k] = v
	}
	n.stats.servedMu.Unlock()
	for _, p := range n.peers {
		host := hostOf(p.addr)
		ps := PeerStats{Addr: p.addr, FromPeer: p.fromPeer.Load(), ServedTo: served[host],
			Failures: p.failures.Load(), Avoided: !p.usable(timeNow())}
		st.Peers = append(st.Peers, ps)
	}
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].Addr < st.Peers[j].Addr })
	return st
}
