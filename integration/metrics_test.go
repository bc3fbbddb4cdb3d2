package integration

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// freePort returns a port on host (a loopback address) nothing listens on now.
func freePort(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// exposition is a parsed scrape or textfile: metric families by name.
type exposition map[string]*dto.MetricFamily

func parseExposition(t *testing.T, r io.Reader) exposition {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("the metrics do not parse: %v", err)
	}
	return fams
}

// find returns the series of name whose labels include want, or nil.
func (x exposition) find(name string, want map[string]string) *dto.Metric {
	for _, m := range x[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for k, v := range want {
			ok = ok && have[k] == v
		}
		if ok {
			return m
		}
	}
	return nil
}

// sample is find that fails the test when there is no such series.
func (x exposition) sample(t *testing.T, name string, want map[string]string) *dto.Metric {
	t.Helper()
	m := x.find(name, want)
	if m == nil {
		t.Fatalf("no %s%v among %v", name, want, x[name].GetMetric())
	}
	return m
}

// value is a counter's or gauge's value.
func (x exposition) value(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	m := x.sample(t, name, labels)
	if c := m.GetCounter(); c != nil {
		return c.GetValue()
	}
	return m.GetGauge().GetValue()
}

// opCount is how many FUSE requests of op the daemon answered; some of
// them were timed into the op's latency histogram.
func (x exposition) opCount(t *testing.T, mnt, op string) uint64 {
	t.Helper()
	lbl := map[string]string{"mountpoint": mnt, "op": op}
	n := uint64(x.value(t, "cachefs_fuse_requests_total", lbl))
	h := x.sample(t, "cachefs_fuse_request_duration_seconds", lbl).GetHistogram()
	if b := h.GetBucket(); h.GetSampleCount() == 0 || h.GetSampleCount() > n || b[len(b)-1].GetCumulativeCount() > h.GetSampleCount() {
		t.Errorf("%s: %d requests, a histogram of %d with buckets %v", op, n, h.GetSampleCount(), b)
	}
	return n
}

func scrape(t *testing.T, port string) exposition {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/metrics")
	if err != nil {
		t.Fatalf("scraping the endpoint: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return parseExposition(t, resp.Body)
}

// readFiles opens and reads whole every file below dir and returns how
// many there were and their bytes.
func readFiles(t *testing.T, dir string) (n int, bytes int64) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "sub-*", "*.bin"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no files below %s: %v", dir, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bytes += int64(len(b))
	}
	return len(paths), bytes
}

// The endpoint and the textfile tell what the mount did: opens counted per
// FUSE opcode with their latencies, the bytes a cold read took from the
// source, failed lookups by errno; the file keeps the final figures after
// unmount.
func TestMetricsEndpointAndFile(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	changed := filepath.Join(src, "changed.bin")
	if err := os.WriteFile(changed, []byte("before the snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePort(t, "127.0.0.1")
	file := filepath.Join(e.tmp, "cachefs.prom")
	// Opens reach the daemon only with passthrough on; without prefetch,
	// nothing but the test's reads takes bytes from the source.
	e.mount(src, mnt, "--passthrough=on", "--prefetch=off",
		"--metrics-addr", port, "--metrics-file", file, "--metrics-interval", "1h")
	lbl := map[string]string{"mountpoint": mnt}
	with := func(k, v string) map[string]string { return map[string]string{"mountpoint": mnt, k: v} }

	before := scrape(t, port)
	// Nothing has opened a file yet: no OPEN series, or one from the mount's own probes.
	opens0 := uint64(before.find("cachefs_fuse_requests_total", with("op", "OPEN")).GetCounter().GetValue())
	src0 := before.value(t, "cachefs_read_bytes_total", with("from", "source"))
	n, cold := readFiles(t, mnt)
	// A file changed on the source since the snapshot is never served.
	if err := os.WriteFile(changed, []byte("after the snapshot, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(filepath.Join(mnt, "changed.bin")); err == nil {
		t.Fatal("a file changed on the source was read through the mount")
	}

	after := scrape(t, port)
	if got := after.opCount(t, mnt, "OPEN"); got < opens0+uint64(n) {
		t.Errorf("OPEN count went from %d to %d after %d opens", opens0, got, n)
	}
	if got := after.opCount(t, mnt, "READ"); got < uint64(n) {
		t.Errorf("%d READs counted for %d files read", got, n)
	}
	if got := after.value(t, "cachefs_read_bytes_total", with("from", "source")) - src0; got != float64(cold) {
		t.Errorf("bytes from the source grew by %v while the test read %d bytes cold", got, cold)
	}
	if got := after.value(t, "cachefs_fuse_request_errors_total", map[string]string{"mountpoint": mnt, "op": "READ", "errno": "EIO"}); got < 1 {
		t.Errorf("%v failed reads counted, want at least 1", got)
	}
	if got := after.value(t, "cachefs_errors_total", with("kind", "fuse")); got < 1 {
		t.Errorf("cachefs_errors_total{kind=\"fuse\"} = %v, want at least 1", got)
	}
	if after.value(t, "cachefs_cache_budget_bytes", lbl) <= 0 {
		t.Errorf("no cache budget")
	}
	after.value(t, "process_resident_memory_bytes", lbl)
	for name := range after {
		if strings.Contains(name, src) {
			t.Errorf("a metric names the source path: %s", name)
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/")
	if err != nil {
		t.Fatalf("GET /: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET / answered %d; only /metrics is served", resp.StatusCode)
	}
	// A bare port is bound to 127.0.0.1 alone: another address of this
	// host (127.0.0.2 is one on every Linux) reaches nothing.
	if c, err := net.DialTimeout("tcp", "127.0.0.2:"+port, time.Second); err == nil {
		c.Close()
		t.Errorf("--metrics-addr %s listens beyond 127.0.0.1", port)
	}

	// Scripts that read status --json branch on its schema version.
	if r := e.run("status", "--json", mnt); r.code != 0 || !strings.Contains(r.stdout, `"schema": 1`) && !strings.Contains(r.stdout, `"schema":1`) {
		t.Errorf("status --json: exit %d, no schema version 1: %s%s", r.code, r.stdout, r.stderr)
	}

	e.unmount(mnt)
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("no metrics file after unmount: %v", err)
	}
	defer f.Close()
	final := parseExposition(t, f)
	if got := final.value(t, "cachefs_served_bytes_total", lbl); got < float64(cold) {
		t.Errorf("the metrics file written at unmount says %v bytes served, want at least %d", got, cold)
	}
	if got := final.opCount(t, mnt, "OPEN"); got < opens0+uint64(n) {
		t.Errorf("the metrics file written at unmount counts %d OPENs, want at least %d", got, opens0+uint64(n))
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+port, time.Second); err == nil {
		t.Errorf("the metrics endpoint outlived the mount")
	}
}

func TestMetricsAddrStaysLocal(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	r := e.run("mount", src, mnt, "--metrics-addr", "0.0.0.0:"+freePort(t, "127.0.0.1"))
	if r.code != 2 || !strings.Contains(r.stderr, "--metrics-public") {
		t.Fatalf("a public --metrics-addr without --metrics-public: exit %d, want 2\nstderr: %s", r.code, r.stderr)
	}
	if isMounted(mnt) {
		t.Fatalf("mounted despite the refused address")
	}
}

// A name another user took first in a shared (sticky) directory is
// refused before anything is mounted, and left as it was.
func TestMetricsFileRefusesPlantedTarget(t *testing.T) {
	e := newEnv(t)
	_, other := newUser(t, "metrics")
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	shared := filepath.Join(e.tmp, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(e.tmp, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	link, foreign := filepath.Join(shared, "link.prom"), filepath.Join(shared, "foreign.prom")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(foreign, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, foreign} {
		if err := os.Lchown(p, int(other.Uid), int(other.Gid)); err != nil {
			t.Fatal(err)
		}
		r := e.run("mount", src, mnt, "--metrics-file", p)
		if r.code != 2 || !strings.Contains(r.stderr, p) {
			t.Errorf("--metrics-file %s planted by another user: exit %d, want 2 naming it\nstderr: %s", p, r.code, r.stderr)
		}
		if isMounted(mnt) {
			e.unmount(mnt)
			t.Errorf("mounted despite the refused --metrics-file")
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the file the planted link names was written: %q", b)
	}
	if b, _ := os.ReadFile(foreign); string(b) != "theirs" {
		t.Errorf("the other user's file was replaced: %q", b)
	}
}
