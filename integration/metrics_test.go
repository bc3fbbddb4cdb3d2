package integration

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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

// metricValue finds one sample in the text exposition format; labels is
// the exact label set as written, sorted by name.
func metricValue(t *testing.T, text, name, labels string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"}") + ` (\S+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no %s{%s} in:\n%s", name, labels, text)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkExposition checks that every sample line belongs to a family
// announced by HELP and TYPE lines, as Prometheus's parser wants.
func checkExposition(t *testing.T, text string) {
	t.Helper()
	typed := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "# TYPE "):
			f := strings.Fields(l)
			if len(f) != 4 || (f[3] != "counter" && f[3] != "gauge") {
				t.Errorf("bad TYPE line %q", l)
			}
			typed[f[2]] = true
		case strings.HasPrefix(l, "# HELP "):
		default:
			name := l[:strings.IndexAny(l, "{ ")]
			if !typed[name] {
				t.Errorf("sample of an undeclared family: %q", l)
			}
		}
	}
}

func TestMetricsEndpointAndFile(t *testing.T) {
	e := newEnv(t)
	src, mnt := filepath.Join(e.tmp, "src"), filepath.Join(e.tmp, "mnt")
	runTree(t, src)
	port := freePort(t, "127.0.0.1")
	file := filepath.Join(e.tmp, "cachefs.prom")
	e.mount(src, mnt, "--metrics-addr", port, "--metrics-file", file, "--metrics-interval", "1h")
	data, err := os.ReadFile(filepath.Join(mnt, "sub-01", "run-05.bin"))
	if err != nil {
		t.Fatal(err)
	}
	lbl := `mountpoint="` + mnt + `"`

	// A bare port is served on loopback only.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + "/metrics")
	if err != nil {
		t.Fatalf("scraping the endpoint: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	text := string(body)
	checkExposition(t, text)
	if got := metricValue(t, text, "cachefs_served_bytes_total", lbl); got < float64(len(data)) {
		t.Errorf("served bytes %v, want at least the %d read", got, len(data))
	}
	if metricValue(t, text, "cachefs_cache_budget_bytes", lbl) <= 0 {
		t.Errorf("no cache budget in:\n%s", text)
	}
	metricValue(t, text, "cachefs_read_bytes_total", `from="source",`+lbl)
	if strings.Contains(text, src) {
		t.Errorf("the metrics name the source path:\n%s", text)
	}
	if resp, err := http.Get("http://127.0.0.1:" + port + "/"); err == nil {
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET / answered %d; only /metrics is served", resp.StatusCode)
		}
		resp.Body.Close()
	}

	// Scripts that read status --json branch on its schema version.
	if r := e.run("status", "--json", mnt); r.code != 0 || !strings.Contains(r.stdout, `"schema": 1`) && !strings.Contains(r.stdout, `"schema":1`) {
		t.Errorf("status --json: exit %d, no schema version 1: %s%s", r.code, r.stdout, r.stderr)
	}

	e.unmount(mnt)
	final, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("no metrics file after unmount: %v", err)
	}
	checkExposition(t, string(final))
	if got := metricValue(t, string(final), "cachefs_served_bytes_total", lbl); got < float64(len(data)) {
		t.Errorf("the metrics file written at unmount says %v bytes served, want at least %d", got, len(data))
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
