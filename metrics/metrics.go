// Package metrics publishes a daemon's Prometheus registry: a scrape
// endpoint bound only to the address asked for, and node_exporter textfiles
// written atomically into a directory no other user controls. What the
// figures are is the caller's business (a prometheus.Collector read at
// scrape time); this package only decides where they may go.
//
// # Registry
//
// NewRegistry makes a registry of the daemon's own, never the global
// default, so nothing a dependency registers leaks into it. It holds the
// caller's collector plus the process collector (CPU seconds, resident
// memory, open descriptors, start time) and the Go runtime collector
// (heap, GC, goroutines): what operators of any Go exporter expect, read
// from /proc and runtime/metrics only when scraped, with no stop of the
// world. Every series carries the labels given (cachefs: the mountpoint),
// so the files of several daemons on one node never collide in
// node_exporter, which refuses duplicate series.
//
// # Serving
//
// Serve answers GET /metrics only, with header and body deadlines. Listen
// refuses an address that is not loopback unless the caller says it is
// meant (a site that scrapes nodes over the network).
//
// # Textfiles
//
// WriteFile writes through prometheus.WriteToTextfile (a temporary file in
// the same directory, made 0644 and renamed over the target, so a collector
// never reads half of one) after CheckFile has verified, each time, that
// no other user can swap what it writes: the directory and every one above
// it belong to root or the effective uid and are writable by others only
// with the sticky bit (privdir's rule for shared parents), and the target
// is missing or a regular file of the effective uid's with one link. A
// symlink or another user's file at the name is refused, never replaced:
// someone else put it there.
package metrics

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cachefs/cachefs/privdir"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"
)

// ErrNotLoopback is returned by Listen for an address other machines can
// reach when that was not allowed.
var ErrNotLoopback = errors.New("metrics: address is not loopback")

// ErrUnsafeFile is matched by CheckFile's refusals of a textfile target.
var ErrUnsafeFile = errors.New("metrics: unsafe textfile target")

// NewRegistry returns a registry holding c and the process and Go runtime
// collectors, every series labelled with labels.
func NewRegistry(labels prometheus.Labels, c prometheus.Collector) (*prometheus.Registry, error) {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(labels, reg)
	for _, c := range []prometheus.Collector{c,
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector()} {
		if err := r.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return reg, nil
}

// Resolve checks addr for the metrics endpoint and returns the address to
// listen on. A bare port (":9100" or "9100") is bound to 127.0.0.1; any
// other host must be a loopback address unless public is set.
func Resolve(addr string, public bool) (string, error) {
	if _, err := strconv.Atoi(addr); err == nil {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if !public && !isLoopback(host) {
		return "", fmt.Errorf("%w: %s", ErrNotLoopback, host)
	}
	return net.JoinHostPort(host, port), nil
}

// Listen opens addr, checked by Resolve, for the metrics endpoint.
func Listen(addr string, public bool) (net.Listener, error) {
	a, err := Resolve(addr, public)
	if err != nil {
		return nil, err
	}
	return net.Listen("tcp", a)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Handler serves g at /metrics only.
func Handler(g prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}

// Serve serves g on l until the returned stop is called.
func Serve(l net.Listener, g prometheus.Gatherer) (stop func()) {
	srv := &http.Server{Handler: Handler(g), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }
}

// WriteFile replaces path with what g gathers, in node_exporter's textfile
// format, once CheckFile allows it. The file is 0644 because the collector
// that reads it (node_exporter) runs as another user.
func WriteFile(path string, g prometheus.Gatherer) error {
	if err := CheckFile(path); err != nil {
		return err
	}
	if err := prometheus.WriteToTextfile(path, g); err != nil {
		return fmt.Errorf("metrics: writing %s: %w", path, err)
	}
	return nil
}

// CheckFile says whether path may be written as the package comment says.
// path must be absolute.
func CheckFile(path string) error {
	dir := filepath.Dir(path)
	if _, err := privdir.Find(dir); err != nil {
		return fmt.Errorf("%w: %w", ErrUnsafeFile, err)
	}
	var st unix.Stat_t
	switch err := unix.Lstat(path, &st); {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("metrics: %w", &os.PathError{Op: "lstat", Path: path, Err: err})
	}
	why := ""
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		why = "is a symlink"
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		why = "is not a regular file"
	case st.Uid != uint32(os.Geteuid()):
		why = "is owned by " + privdir.Owner(st.Uid) + ", not by you"
	case st.Nlink != 1:
		why = fmt.Sprintf("has %d hard links", st.Nlink)
	default:
		return nil
	}
	return fmt.Errorf("%w: %s %s; remove it or name another file", ErrUnsafeFile, path, why)
}
