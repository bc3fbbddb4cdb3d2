package push

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestExcludePatterns: --exclude takes a name, a relative path or a
// directory ("dir/"); what matches is not pushed and is counted, the rest
// is, and lock files stay excluded beside the patterns given.
func TestExcludePatterns(t *testing.T) {
	f := newFixture(t, nil)
	for _, p := range []string{"keep", "scratch.tmp", "a/scratch.tmp", "a/b/drop", "a/b/keep", "logs/x", "logs/y/z", "x.lock"} {
		write(t, filepath.Join(f.upper, p), p)
	}
	r := f.run(t, Options{Exclude: []string{"*.tmp", "a/b/drop", "logs/"}})
	for _, p := range []string{"keep", "a/b/keep"} {
		if got := content(t, filepath.Join(f.src, p)); got != p {
			t.Errorf("%s: %q, want it pushed", p, got)
		}
	}
	for _, p := range []string{"scratch.tmp", "a/scratch.tmp", "a/b/drop", "logs", "x.lock"} {
		if _, err := os.Lstat(filepath.Join(f.src, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s pushed despite --exclude: %v", p, err)
		}
	}
	if r.Copied != 2 || r.Excluded != 5 {
		t.Errorf("result %+v: want 2 copied, 5 excluded (two names, a path, a directory, a lock file)", r)
	}
}
