package main

import "testing"

func TestEarlyOptionsCheck(t *testing.T) {
	e := earlyOptions{maxInFlight: 8, minInFlight: 16}
	got, err := e.check("dir,list")
	if err != nil {
		t.Fatal(err)
	}
	if e.minInFlight != 8 || !got.OnOpen || !got.OnList {
		t.Errorf("got %+v %+v, want min lowered to 8, both policies on", e, got)
	}
	e = earlyOptions{maxInFlight: 64, minInFlight: 16}
	if got, err := e.check("off"); err != nil || got.OnOpen || got.OnList {
		t.Errorf("off: %v %+v", err, got)
	}
	if got, err := e.check("dir"); err != nil || !got.OnOpen || got.OnList {
		t.Errorf("dir: %v %+v", err, got)
	}
	for _, bad := range []earlyOptions{
		{maxInFlight: 0, minInFlight: 1},
		{maxInFlight: 5000, minInFlight: 1},
		{maxInFlight: 8, minInFlight: 1, warm: []string{"/abs"}},
		{maxInFlight: 8, minInFlight: 1, warm: []string{"a/../../b"}},
	} {
		if _, err := bad.check("dir"); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	e = earlyOptions{maxInFlight: 8, minInFlight: 1}
	if _, err := e.check("dir,nope"); err == nil {
		t.Error("--prefetch dir,nope accepted")
	}
}

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
