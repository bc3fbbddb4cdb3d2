package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cachefs/cachefs/internal/testutil"
	"github.com/spf13/pflag"
)

// Every mount flag the user sets reaches the daemon, paths made absolute,
// without a second list of flags to keep in step with AddFlags.
func TestForwardedFlags(t *testing.T) {
	cmd := newRootCommand()
	mount, _, err := cmd.Find([]string{"mount"})
	if err != nil {
		t.Fatal(err)
	}
	var set []string
	mount.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "foreground" || f.Name == "ready-fd" || f.Name == "help" {
			return
		}
		v := f.DefValue
		switch f.Value.Type() {
		case "path":
			v = "rel/" + f.Name
		case "bool":
			v = "true"
		}
		set = append(set, "--"+f.Name+"="+v)
	})
	if err := mount.ParseFlags(append(set, "--foreground", "--log-level=debug")); err != nil {
		t.Fatal(err)
	}
	got := forwardedFlags(mount.Flags())
	for _, a := range set {
		want := a
		if name, v, _ := strings.Cut(strings.TrimPrefix(a, "--"), "="); strings.HasPrefix(v, "rel/") {
			abs, _ := filepath.Abs(v)
			want = "--" + name + "=" + abs
		}
		if !slices.Contains(got, want) {
			t.Errorf("%s not forwarded as %s: %v", a, want, got)
		}
	}
	if !slices.Contains(got, "--log-level=debug") || slices.Contains(got, "--foreground=true") {
		t.Errorf("the global flags go along and the launcher's own do not: %v", got)
	}
}

// Every usage error is found before anything exists: neither the
// mountpoint nor a cache directory is made.
func TestUsageErrorsCreateNothing(t *testing.T) {
	d := t.TempDir()
	t.Setenv("TMPDIR", d)
	for _, flags := range []string{"--block-size=3KiB", "--cache-size=120%", "--passthrough=maybe",
		"--prefetch=all", "--prefetch-dir-bytes=0", "--walkers=0", "--index=x --reuse-index",
		"--index=x --save-index=y"} {
		cmd := newMountCommand(&globalOptions{logLevel: "info", logFormat: "console"})
		if err := cmd.ParseFlags(strings.Fields(flags)); err != nil {
			t.Fatal(err)
		}
		cmd.SetContext(context.Background())
		err := cmd.RunE(cmd, []string{d, filepath.Join(d, "mnt")})
		if exitCode(err) != exitUsage {
			t.Errorf("%s: exit %d (%v), want %d", flags, exitCode(err), err, exitUsage)
		}
		if ents := testutil.ReadDir(t, d); len(ents) > 0 {
			t.Fatalf("%s: %s holds %v", flags, d, ents)
		}
	}
}
