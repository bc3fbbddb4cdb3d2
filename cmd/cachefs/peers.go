package main

import (
	"os"
	"time"

	"github.com/cachefs/cachefs/daemon"
	"github.com/spf13/pflag"
)

// peerOptions are the flags that make a mount share blocks with the other
// nodes of its job.
type peerOptions struct {
	s          daemon.PeerSettings
	secretFile pathFlag
}

func (o *peerOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.s.List, "peers", "", "share blocks with the job's other nodes: host:port entries separated by commas, a SLURM hostlist (node[01-16]:7070), or 'slurm' for $SLURM_JOB_NODELIST with the port of --listen; needs --listen and --peer-secret-file")
	f.StringVar(&o.s.Listen, "listen", "", "address (host:port) this node serves its peers on; never all interfaces unless given so")
	f.Var(&o.secretFile, "peer-secret-file", "the job's shared secret, a file only the mounting user can read (mode 0600) on a filesystem all the job's nodes see; created if missing")
	f.DurationVar(&o.s.Timeout, "peer-timeout", time.Second, "deadline of each request to a peer; past it the node reads that block from the source, and after three in a row leaves the peer alone for a while")
}

// settings adds what the environment says of this node.
func (o *peerOptions) settings() daemon.PeerSettings {
	s := o.s
	if o.secretFile != "" {
		s.SecretFile = o.secretFile.abs()
	}
	s.NodeList, s.NodeName = os.Getenv("SLURM_JOB_NODELIST"), os.Getenv("SLURMD_NODENAME")
	s.Host, _ = os.Hostname() // a node without a name is found by --listen or SLURMD_NODENAME
	return s
}
