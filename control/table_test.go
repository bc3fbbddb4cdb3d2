package control

import (
	"strings"
	"testing"

	"github.com/cachefs/cachefs/peer"
	"github.com/cachefs/cachefs/prefetch"
)

// The table shows a row per aspect the reply holds, and no row for one it
// does not.
func TestStatusTable(t *testing.T) {
	r := &StatusReply{Mountpoint: "/m", Source: "/s", Pid: 7, Passthrough: true,
		Prefetch: &prefetch.Stats{Warm: &prefetch.WarmStats{Files: 4, Done: 4}},
		Writable: &WritableStatus{Upper: "/c/upper", Files: 2},
		Peers:    &peer.Stats{Self: "n1:7070", Peers: []peer.PeerStats{{Addr: "n2:7070", Avoided: true}}}}
	got := r.Table()
	flat := strings.Join(strings.Fields(got), " ")
	for _, want := range []string{"mountpoint /m source", "daemon pid 7", "warm 4 of 4 files staged", "; done",
		"passthrough on (0 opens)", "writable 2 changed files", "peers this node n1:7070", "n2:7070: ", "avoided"} {
		if !strings.Contains(flat, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	got = (&StatusReply{}).Table()
	if !strings.Contains(got, "prefetch") || strings.Contains(got, "writable") || strings.Contains(got, "peers") {
		t.Errorf("an empty reply's table:\n%s", got)
	}
}
