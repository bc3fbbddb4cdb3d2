package metrics

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

func TestResolveKeepsToLoopback(t *testing.T) {
	for _, c := range []struct {
		addr   string
		public bool
		want   string
		err    error
	}{
		{"9100", false, "127.0.0.1:9100", nil},
		{":9100", false, "127.0.0.1:9100", nil},
		{"localhost:9100", false, "localhost:9100", nil},
		{"[::1]:9100", false, "[::1]:9100", nil},
		{"0.0.0.0:9100", false, "", ErrNotLoopback},
		{"10.1.2.3:9100", false, "", ErrNotLoopback},
		{"0.0.0.0:9100", true, "0.0.0.0:9100", nil},
	} {
		got, err := Resolve(c.addr, c.public)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("Resolve(%q, %v) = %q, %v; want %q, %v", c.addr, c.public, got, err, c.want, c.err)
		}
	}
}

func parseFile(t *testing.T, path string) map[string]*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("%s does not parse: %v", path, err)
	}
	return fams
}

// Every series, the runtime's included, carries the registry's labels, so
// the files of two daemons on one node never hold the same series.
func TestWriteFileLabelsEverySeries(t *testing.T) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})
	c.Add(3)
	reg, err := NewRegistry(prometheus.Labels{"mountpoint": "/m"}, c)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "x.prom")
	if err := WriteFile(path, reg); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("stat %s: %v, %v; want mode 0644", path, st, err)
	}
	fams := parseFile(t, path)
	if got := fams["x_total"].GetMetric()[0].GetCounter().GetValue(); got != 3 {
		t.Errorf("x_total = %v, want 3", got)
	}
	for _, name := range []string{"process_resident_memory_bytes", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			if !hasLabel(m, "mountpoint") {
				t.Errorf("a series of %s has no mountpoint label: %v", name, m)
			}
		}
	}
}

func hasLabel(m *dto.Metric, name string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return true
		}
	}
	return false
}

// A name someone else could have planted is refused and left as it is.
func TestCheckFileRefusesPlantedTargets(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to give files to another uid")
	}
	reg, err := NewRegistry(nil, prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	plant := map[string]func(p string) error{
		"symlink": func(p string) error { return os.Symlink(victim, p) },
		"foreign": func(p string) error {
			if err := os.WriteFile(p, []byte("theirs"), 0o644); err != nil {
				return err
			}
			return os.Lchown(p, 54321, 54321)
		},
		"hardlink": func(p string) error { return os.Link(victim, p) },
		"fifo":     func(p string) error { return unix.Mkfifo(p, 0o644) },
	}
	for name, f := range plant {
		p := filepath.Join(dir, name+".prom")
		if err := f(p); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Lstat(p)
		if err := WriteFile(p, reg); !errors.Is(err, ErrUnsafeFile) {
			t.Errorf("%s at the target: WriteFile = %v, want ErrUnsafeFile", name, err)
		}
		if after, _ := os.Lstat(p); !os.SameFile(before, after) {
			t.Errorf("%s at the target was replaced", name)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep" {
		t.Errorf("the file a link points to was written: %q", b)
	}

	// A directory others may write in without the sticky bit lets them
	// swap the file between the check and the rename.
	loose := filepath.Join(dir, "loose")
	if err := os.Mkdir(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(loose, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(loose, "x.prom"), reg); !errors.Is(err, ErrUnsafeFile) {
		t.Errorf("a world-writable directory: WriteFile = %v, want ErrUnsafeFile", err)
	}
	// A sticky one, like /tmp, is fine.
	if err := os.Chmod(loose, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(loose, "x.prom"), reg); err != nil {
		t.Errorf("a sticky directory: %v", err)
	}
}
