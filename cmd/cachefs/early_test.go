package main

import "testing"

// The default prefetches on open and on listing a directory of 256
// entries or more (docs/benchmarks.md measures why).
func TestPrefetchDefaults(t *testing.T) {
	cmd := newMountCommand(&globalOptions{})
	if d := cmd.Flags().Lookup("prefetch").DefValue; d != "dir,list" {
		t.Errorf("--prefetch defaults to %q, want dir,list", d)
	}
	if d := cmd.Flags().Lookup("prefetch-list-min").DefValue; d != "256" {
		t.Errorf("--prefetch-list-min defaults to %q, want 256", d)
	}
}

// A repeated --warm reaches the daemon once per path.
func TestForwardedWarm(t *testing.T) {
	cmd := newMountCommand(&globalOptions{})
	if err := cmd.Flags().Parse([]string{"--warm", "a", "--warm=b c", "--max-in-flight", "8"}); err != nil {
		t.Fatal(err)
	}
	got := forwardedFlags(cmd.Flags())
	want := map[string]bool{"--warm=a": true, "--warm=b c": true, "--max-in-flight=8": true}
	if len(got) != len(want) {
		t.Fatalf("forwarded %q", got)
	}
	for _, a := range got {
		if !want[a] {
			t.Errorf("forwarded %q", a)
		}
	}
}
