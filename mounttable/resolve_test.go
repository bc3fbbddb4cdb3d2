package mounttable

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestResolve(t *testing.T) {
	// The temporary directory may itself sit below a link.
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(d, "real", "sub"), 0o755))
	must(os.Symlink("real", filepath.Join(d, "rel")))
	must(os.Symlink(filepath.Join(d, "rel"), filepath.Join(d, "chain")))
	must(os.Symlink(filepath.Join(d, "real", "sub"), filepath.Join(d, "abs")))
	must(os.Symlink("nowhere", filepath.Join(d, "dangling")))
	must(os.Symlink("loop", filepath.Join(d, "loop")))

	cases := map[string]string{
		"real":           "real",
		"rel":            "real",
		"chain":          "real",
		"abs":            "real/sub",
		"chain/sub":      "real/sub",
		"rel/new/deeper": "real/new/deeper", // to be created: kept as given
		"dangling":       "nowhere",
		"missing/rel":    "missing/rel",
	}
	for in, want := range cases {
		got, err := Resolve(filepath.Join(d, in))
		if err != nil || got != filepath.Join(d, want) {
			t.Errorf("Resolve(%s) = %s, %v; want %s", in, got, err, filepath.Join(d, want))
		}
	}
	if _, err := Resolve(filepath.Join(d, "loop")); !errors.Is(err, unix.ELOOP) {
		t.Errorf("a link to itself: %v, want ELOOP", err)
	}
	// resolveParent leaves the last component alone, link or not.
	if got, err := ResolveParent(filepath.Join(d, "chain", "x")); err != nil || got != filepath.Join(d, "real", "x") {
		t.Errorf("ResolveParent(chain/x) = %s, %v", got, err)
	}
	if got, err := ResolveParent(filepath.Join(d, "rel")); err != nil || got != filepath.Join(d, "rel") {
		t.Errorf("ResolveParent(rel) = %s, %v", got, err)
	}
}
