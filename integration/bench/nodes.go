package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// The multi-node setups stand in for the nodes of one job: N cachefs
// daemons, each on its own loopback address (127.0.0.2, 127.0.0.3, ...)
// with its own mountpoint and cache dir, all over the one slow-source
// fixture, and every node running the whole job with its own readers, all
// nodes at once. cachefs-peersN lists the daemons as each other's --peers
// (one secret file); cachefs-nodesN is the same N mounts without, so the
// source bytes and the whole-job time of the two compare side by side. A
// phase lasts until the last node is done; its checksum must be every
// node's, and the job bytes reported are one node's, so "source / job" in
// the report reads as the times the source served the tree.
//
// Each node reads the phase's list rotated by its share (node k starts k/N
// of the way in), as data-parallel loaders start their epochs on different
// shards, so the nodes do not ask for the same block at the same moment.

// nodeSetups are the multi-node setups and whether their nodes are peers.
var nodeSetups = map[string]struct {
	n     int
	peers bool
}{
	"cachefs-nodes4": {4, false},
	"cachefs-peers4": {4, true},
}

// stageNodes makes the tree readable the setup's way and returns the root
// of every node: one for an ordinary setup.
func (b *bench) stageNodes(ctx context.Context, setup, src string, cl *cleanups) ([]string, error) {
	ns, ok := nodeSetups[setup]
	if !ok {
		root, err := b.stage(ctx, setup, src, cl)
		return []string{root}, err
	}
	list, err := peerList(ns.n)
	if err != nil {
		return nil, err
	}
	secret := filepath.Join(b.run, setup+".secret")
	var roots []string
	for k := range ns.n {
		var args []string
		if ns.peers {
			args = []string{"--peers", strings.Join(list, ","), "--listen", list[k], "--peer-secret-file", secret}
		}
		root, err := b.cachefsMount(ctx, fmt.Sprintf("%s-node%d", setup, k), src, cl, args...)
		if err != nil {
			return nil, fmt.Errorf("node %d: %w", k, err)
		}
		roots = append(roots, root)
	}
	return roots, nil
}

// peerList returns n loopback addresses from 127.0.0.2 on, with one port
// found free on the first.
func peerList(n int) ([]string, error) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		return nil, fmt.Errorf("finding a port for the peers: %w", err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	var list []string
	for k := range n {
		list = append(list, net.JoinHostPort(fmt.Sprintf("127.0.0.%d", k+2), port))
	}
	return list, nil
}

// runPhaseNodes runs one phase on every root at once and returns what one
// node read, after checking that every node read the same, and the time
// until the last node finished.
func (b *bench) runPhaseNodes(ctx context.Context, phase string, roots []string) (sums, time.Duration, error) {
	if len(roots) == 1 {
		return b.runPhase(ctx, phase, roots[0])
	}
	got := make([]sums, len(roots))
	took := make([]time.Duration, len(roots))
	g, gctx := errgroup.WithContext(ctx)
	for k, root := range roots {
		nb, err := b.rotated(phase, k, len(roots))
		if err != nil {
			return sums{}, 0, err
		}
		g.Go(func() error {
			var err error
			if got[k], took[k], err = nb.runPhase(gctx, phase, root); err != nil {
				return fmt.Errorf("node %d: %w", k, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return sums{}, 0, err
	}
	for k := range got {
		if got[k] != got[0] {
			return sums{}, 0, fmt.Errorf("node %d read %d items, %d bytes, sum %016x; node 0 read %d items, %d bytes, sum %016x",
				k, got[k].Items, got[k].Bytes, got[k].Sum, got[0].Items, got[0].Bytes, got[0].Sum)
		}
	}
	// The nodes' readers start within moments of each other, so the
	// longest node is the phase's wall time.
	return got[0], slices.Max(took), nil
}

// rotated returns a copy of b whose list for phase is node k's of n: the
// same entries, starting k/n of the way in.
func (b *bench) rotated(phase string, k, n int) (*bench, error) {
	data, err := os.ReadFile(b.lists[phase])
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	cut := k * len(lines) / n
	lines = append(lines[cut:], lines[:cut]...)
	path := filepath.Join(b.run, fmt.Sprintf("%s.node%d.list", phase, k))
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return nil, err
	}
	nb := *b
	nb.lists = map[string]string{phase: path}
	return &nb, nil
}
