package mounttable

import (
	"os"
	"testing"
)

func TestParseLine(t *testing.T) {
	for _, c := range []struct {
		line string
		want Entry
		ok   bool
	}{
		{`36 35 0:40 / /tmp/a\040b rw,nosuid shared:1 - fuse.cachefs /src\011x rw`, Entry{"/tmp/a b", "fuse.cachefs", "/src\tx"}, true},
		{`36 35 0:40 / /m rw - fuse.cachefs /back\134slash rw`, Entry{"/m", "fuse.cachefs", `/back\slash`}, true},
		{`36 35 0:40 / /m rw - ext4`, Entry{}, false},
		{`garbage`, Entry{}, false},
	} {
		got, ok := parseLine(c.line)
		if ok != c.ok || got != c.want {
			t.Errorf("parseLine(%q) = %+v, %v; want %+v, %v", c.line, got, ok, c.want, c.ok)
		}
	}
}

func TestProcessAlive(t *testing.T) {
	if !ProcessAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if ProcessAlive(0) || ProcessAlive(-1) {
		t.Error("pid 0 or -1 is alive")
	}
	if IsMounted("/no/such/mountpoint") {
		t.Error("a missing path is mounted")
	}
	if !IsMounted("/") {
		t.Error("/ is not mounted")
	}
}
