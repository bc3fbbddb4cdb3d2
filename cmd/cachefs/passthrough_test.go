package main

import (
	"strings"
	"testing"

	"github.com/cachefs/cachefs/snapshot"
)

func TestChoosePassthrough(t *testing.T) {
	small := snapshot.Stats{Files: 1000, Bytes: 1000 * (374 << 10)}
	large := snapshot.Stats{Files: 10, Bytes: 10 * (64 << 20)}
	empty := snapshot.Stats{}
	for _, c := range []struct {
		flag      string
		available bool
		st        snapshot.Stats
		want      bool
		says      string
	}{
		{"auto", true, small, false, "files average 374 KiB"},
		{"auto", true, large, true, "files average 64 MiB"},
		{"auto", true, empty, false, "files average 0 B"},
		{"auto", false, large, false, "passthrough unavailable: why"},
		{"on", true, small, true, "passthrough on"},
		{"on", false, small, false, "passthrough unavailable: why"},
		{"off", true, large, false, "--passthrough=off"},
	} {
		got, reason := choosePassthrough(c.flag, c.available, "why", c.st)
		if got != c.want || !strings.Contains(reason, c.says) {
			t.Errorf("%s, available %v, %d files of %d bytes: %v %q, want %v and %q",
				c.flag, c.available, c.st.Files, c.st.Bytes, got, reason, c.want, c.says)
		}
		if !got && !strings.Contains(reason, "the kernel opens files itself") {
			t.Errorf("%s: the reason does not say who opens files: %q", c.flag, reason)
		}
	}
}
