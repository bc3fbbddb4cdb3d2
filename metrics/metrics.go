// Package metrics writes a daemon's figures in the Prometheus text
// exposition format (version 0.0.4), which both a Prometheus scrape and
// node_exporter's textfile collector read.
//
// # Why no client library
//
// A daemon's figures are already kept as counters by the packages that
// count them (blockcache, prefetch, fs); what is missing is only their
// spelling on the wire. The format is a few lines of text, so writing it
// here costs less than a dependency tree (client_golang brings protobuf,
// procfs and four more modules) and keeps what the listener can answer to
// exactly the families below: nothing about the process, the Go runtime or
// the build that a site did not ask to publish.
//
// # Serving
//
// Handler answers GET /metrics only. Listen refuses an address that is not
// loopback unless the caller says it is meant (a site that scrapes nodes
// over the network); WriteFile replaces a file atomically, so a collector
// never reads half of one.
package metrics

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNotLoopback is returned by Listen for an address other machines can
// reach when that was not allowed.
var ErrNotLoopback = errors.New("metrics: address is not loopback")

// Kind is a metric family's type.
type Kind string

const (
	Counter Kind = "counter"
	Gauge   Kind = "gauge"
)

// Family is one metric with its samples.
type Family struct {
	Name    string
	Help    string
	Kind    Kind
	Samples []Sample
}

// Sample is one value of a family, told apart by its labels.
type Sample struct {
	Labels map[string]string
	Value  float64
}

// Write writes families in the text exposition format.
func Write(w io.Writer, families []Family) error {
	var b strings.Builder
	for _, f := range families {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escapeHelp(f.Help), f.Name, f.Kind)
		for _, s := range f.Samples {
			b.WriteString(f.Name)
			writeLabels(&b, s.Labels)
			b.WriteByte(' ')
			b.WriteString(formatValue(s.Value))
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLabels(b *strings.Builder, labels map[string]string) {
	if len(labels) == 0 {
		return
	}
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "%s=\"%s\"", n, escapeLabel(labels[n]))
	}
	b.WriteByte('}')
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// Handler serves the families gather returns, at /metrics only.
func Handler(gather func() []Family) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		_ = Write(w, gather())
	})
	return mux
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

// Serve serves the endpoint on l until the returned stop is called.
func Serve(l net.Listener, gather func() []Family) (stop func()) {
	srv := &http.Server{Handler: Handler(gather), ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, MaxHeaderBytes: 8 << 10}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }
}

// WriteFile replaces path with the families, atomically: a new file beside
// it, created exclusively and never through a link, renamed over it. The
// file is 0644 because the collector that reads it (node_exporter) runs as
// another user.
func WriteFile(path string, families []Family) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	defer d.Close()
	tmp := fmt.Sprintf(".%s.%d.%d.tmp", base, os.Getpid(), time.Now().UnixNano())
	fd, err := unix.Openat(int(d.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("metrics: creating %s in %s: %w", tmp, dir, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = Write(f, families)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(int(d.Fd()), tmp, int(d.Fd()), base)
	}
	if err != nil {
		_ = unix.Unlinkat(int(d.Fd()), tmp, 0)
		return fmt.Errorf("metrics: writing %s: %w", path, err)
	}
	return nil
}
