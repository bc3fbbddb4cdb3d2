package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// ErrHostlist means a peer list could not be expanded.
var ErrHostlist = errors.New("peer: cannot expand the peer list")

// Scontrol is the program that expands SLURM hostlist expressions. SLURM's
// own `scontrol show hostnames` is on every node of a SLURM cluster and is
// the reference for the syntax (nested ranges, zero padding, several
// prefixes), so it is used rather than a parser of our own.
var Scontrol = "scontrol"

// ExpandList turns a peer list into host:port entries. list is either
// host:port entries separated by commas, or a SLURM hostlist expression
// (node[01-16], node[1-3,7],gpu[01-02]) optionally followed by :PORT for
// every host; an entry without a port gets port. Expressions with
// brackets are expanded by Scontrol within timeout.
func ExpandList(ctx context.Context, list, port string, timeout time.Duration) ([]string, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, fmt.Errorf("%w: empty list", ErrHostlist)
	}
	if !strings.Contains(list, "[") {
		var out []string
		for e := range strings.SplitSeq(list, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, withPort(e, port))
			}
		}
		return out, nil
	}
	expr, p := list, port
	if i := strings.LastIndex(list, ":"); i > strings.LastIndex(list, "]") {
		expr, p = list[:i], list[i+1:]
	}
	hosts, err := expandHostlist(ctx, expr, timeout)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(hosts))
	for i, h := range hosts {
		out[i] = net.JoinHostPort(h, p)
	}
	return out, nil
}

func withPort(e, port string) string {
	if _, _, err := net.SplitHostPort(e); err == nil {
		return e
	}
	return net.JoinHostPort(e, port)
}

func expandHostlist(ctx context.Context, expr string, timeout time.Duration) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, Scontrol, "show", "hostnames", expr)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w: %s show hostnames %q: %w: %s", ErrHostlist, Scontrol, expr, err, strings.TrimSpace(stderr.String()))
	}
	hosts := strings.Fields(string(out))
	if len(hosts) == 0 {
		return nil, fmt.Errorf("%w: %q names no host", ErrHostlist, expr)
	}
	return hosts, nil
}

// FindSelf returns the entry of peers that is this node: listen itself if
// listed, else the entry whose host is one of names (the host name, SLURM's
// node name) with listen's port.
func FindSelf(peers []string, listen string, names ...string) (string, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%w: --listen %q: want host:port", ErrConfig, listen)
	}
	for _, p := range peers {
		if p == listen {
			return p, nil
		}
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		short, _, _ := strings.Cut(n, ".")
		for _, p := range peers {
			h, pp, _ := net.SplitHostPort(p)
			if pp == port && (h == n || h == short) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: this node (%s, %v) is not in the peer list %v", ErrConfig, listen, names, peers)
}
