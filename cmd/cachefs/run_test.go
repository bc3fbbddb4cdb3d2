package main

import (
	"slices"
	"strings"
	"testing"
)

// run takes every mount flag and hands those the user set to the daemon,
// but not its own: the daemon's mount command would refuse them.
func TestRunForwardsOnlyMountFlags(t *testing.T) {
	cmd := newRootCommand()
	run, _, err := cmd.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--metrics-addr=9100", "--prefetch=off", "--env=HF_HOME", "--grace=3s", "--unmount-timeout=9s"}
	if err := run.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	got := forwardedFlags(run.Flags())
	for _, want := range args[:2] {
		if !slices.Contains(got, want) {
			t.Errorf("%s not forwarded: %v", want, got)
		}
	}
	for _, a := range got {
		for _, own := range []string{"--env", "--grace", "--unmount-timeout"} {
			if strings.HasPrefix(a, own+"=") {
				t.Errorf("run's own %s reaches the daemon: %v", own, got)
			}
		}
	}
}
