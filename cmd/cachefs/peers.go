package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/peer"
	"github.com/dustin/go-humanize"
	"github.com/spf13/pflag"
)

// peerOptions are the flags that make a mount share blocks with the other
// nodes of its job.
type peerOptions struct {
	list       string
	listen     string
	secretFile pathFlag
	timeout    time.Duration
}

func (o *peerOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.list, "peers", "", "share blocks with the job's other nodes: host:port entries separated by commas, a SLURM hostlist (node[01-16]:7070), or 'slurm' for $SLURM_JOB_NODELIST with the port of --listen; needs --listen and --peer-secret-file")
	f.StringVar(&o.listen, "listen", "", "address (host:port) this node serves its peers on; never all interfaces unless given so")
	f.Var(&o.secretFile, "peer-secret-file", "the job's shared secret, a file only the mounting user can read (mode 0600) on a filesystem all the job's nodes see; created if missing")
	f.DurationVar(&o.timeout, "peer-timeout", time.Second, "deadline of each request to a peer; past it the node reads that block from the source, and after three in a row leaves the peer alone for a while")
}

// config checks the peer flags and finds this node among the job's; nil
// without --peers. The daemon loads the secret and binds --listen.
func (o *peerOptions) config(ctx context.Context) (*daemon.PeerConfig, error) {
	if o.list == "" {
		if o.listen != "" || o.secretFile != "" {
			return nil, usageError(errors.New("--listen and --peer-secret-file need --peers"))
		}
		return nil, nil
	}
	if o.listen == "" || o.secretFile == "" {
		return nil, usageError(errors.New("--peers needs --listen and --peer-secret-file"))
	}
	_, port, err := net.SplitHostPort(o.listen)
	if err != nil {
		return nil, usageError(fmt.Errorf("--listen %q: want host:port", o.listen))
	}
	list := o.list
	if list == "slurm" {
		if list = os.Getenv("SLURM_JOB_NODELIST"); list == "" {
			return nil, usageError(errors.New("--peers slurm: SLURM_JOB_NODELIST is not set"))
		}
	}
	peers, err := peer.ExpandList(ctx, list, port, 10*time.Second)
	if err != nil {
		return nil, usageError(err)
	}
	host, _ := os.Hostname() // a node without a name is found by --listen or SLURMD_NODENAME
	self, err := peer.FindSelf(peers, o.listen, os.Getenv("SLURMD_NODENAME"), host)
	if err != nil {
		return nil, usageError(err)
	}
	return &daemon.PeerConfig{Self: self, Peers: peers, Listen: o.listen, SecretFile: o.secretFile.abs(), Timeout: o.timeout}, nil
}

// printPeers adds the peer lines to `cachefs status`.
func printPeers(w io.Writer, p *peer.Stats) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "peers\tthis node %s: %s read from the source, %s from peers, %s served to peers; %d requests refused, %d answers rejected\n",
		p.Self, humanize.IBytes(uint64(p.BytesFromSource)), humanize.IBytes(uint64(p.BytesFromPeers)),
		humanize.IBytes(uint64(p.BytesToPeers)), p.Refused, p.Rejected)
	for _, ps := range p.Peers {
		state := "answering"
		if ps.Avoided {
			state = "avoided"
		}
		fmt.Fprintf(w, "\t%s: %s from it, %s served to its address, %d failures, %s\n",
			ps.Addr, humanize.IBytes(uint64(ps.FromPeer)), humanize.IBytes(uint64(ps.ServedTo)), ps.Failures, state)
	}
}
