package main

import "testing"

// The default is dir: listing prefetch is opt-in.
func TestPrefetchDefaultIsDir(t *testing.T) {
	cmd := newMountCommand(&globalOptions{})
	if d := cmd.Flags().Lookup("prefetch").DefValue; d != "dir" {
		t.Errorf("--prefetch defaults to %q, want dir", d)
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
