package metrics

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestWriteEscapesAndSorts(t *testing.T) {
	var b strings.Builder
	err := Write(&b, []Family{{Name: "x_total", Help: "a \\ b\nc", Kind: Counter, Samples: []Sample{
		{Labels: map[string]string{"z": "1", "a": "q\"\\\n"}, Value: 3},
		{Value: math.Inf(1)},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n" +
		"x_total{a=\"q\\\"\\\\\\n\",z=\"1\"} 3\nx_total +Inf\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

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
