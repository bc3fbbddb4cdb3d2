package daemon

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
		mode      Passthrough
		available bool
		st        snapshot.Stats
		want      bool
		says      string
	}{
		{PassthroughAuto, true, small, false, "files average 374 KiB"},
		{PassthroughAuto, true, large, true, "files average 64 MiB"},
		{PassthroughAuto, true, empty, false, "files average 0 B"},
		{PassthroughAuto, false, large, false, "passthrough unavailable: why"},
		{PassthroughOn, true, small, true, "passthrough on"},
		{PassthroughOn, false, small, false, "passthrough unavailable: why"},
		{PassthroughOff, true, large, false, "--passthrough=off"},
	} {
		got, reason := choosePassthrough(c.mode, c.available, "why", c.st)
		if got != c.want || !strings.Contains(reason, c.says) {
			t.Errorf("%v, available %v, %d files of %d bytes: %v %q, want %v and %q",
				c.mode, c.available, c.st.Files, c.st.Bytes, got, reason, c.want, c.says)
		}
		if !got && !strings.Contains(reason, "the kernel opens files itself") {
			t.Errorf("%v: the reason does not say who opens files: %q", c.mode, reason)
		}
	}
}
