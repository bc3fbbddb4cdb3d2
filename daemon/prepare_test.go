package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cachefs/cachefs/control"
	"github.com/rs/zerolog"
)

// prepare refuses each bad input with its kind, before the cache directory
// exists, and makes the mountpoint and the directories for good input.
func TestPrepare(t *testing.T) {
	d := t.TempDir()
	src := filepath.Join(d, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(d, "full")
	if err := os.MkdirAll(filepath.Join(full, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(d, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := func(src, mnt, cache string) *Config {
		return &Config{Source: src, Mountpoint: mnt, CacheDir: cache, LogFile: filepath.Join(cache, "log"),
			Runtime: control.RuntimeDir{Parent: d, Names: []string{"run"}}}
	}
	cache := filepath.Join(d, "cache")
	for _, c := range []struct {
		name string
		cfg  *Config
		want error
	}{
		{"missing source", cfg(filepath.Join(d, "nope"), filepath.Join(d, "m1"), cache), ErrSource},
		{"source a file", cfg(file, filepath.Join(d, "m1"), cache), ErrSource},
		{"mountpoint hides the source", cfg(src, d, cache), ErrMountpoint},
		{"mountpoint inside the source", cfg(src, filepath.Join(src, "sub"), cache), ErrMountpoint},
		{"cache inside the mountpoint", cfg(src, filepath.Join(d, "m1"), filepath.Join(d, "m1", "c")), ErrCacheDir},
		{"mountpoint not empty", cfg(src, full, cache), ErrMountpoint},
		{"mountpoint a file", cfg(src, file, cache), ErrMountpoint},
	} {
		_, err := prepare(zerolog.Nop(), c.cfg)
		if !errors.Is(err, c.want) || KindOf(err) != c.want {
			t.Errorf("%s: %v (kind %v), want kind %v", c.name, err, KindOf(err), c.want)
		}
		if _, err := os.Stat(cache); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the cache directory was made before the refusal", c.name)
		}
	}
	mnt := filepath.Join(d, "new", "mnt")
	if _, err := prepare(zerolog.Nop(), cfg(src, mnt, cache)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mnt, cache, filepath.Join(d, "run")} {
		if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
			t.Errorf("%s not made: %v", p, err)
		}
	}
}
