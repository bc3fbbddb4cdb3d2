package daemon

import (
	"errors"
	"testing"
)

func TestEarlySettingsParse(t *testing.T) {
	e := EarlySettings{MaxInFlight: 8, MinInFlight: 16, Prefetch: "dir,list", DirBytes: "1GiB"}
	pf, got, err := e.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if pf.MinInFlight != 8 || !got.OnOpen || !got.OnList {
		t.Errorf("got %+v %+v, want min lowered to 8, both policies on", pf, got)
	}
	e = EarlySettings{MaxInFlight: 64, MinInFlight: 16, Prefetch: "off", DirBytes: "1GiB"}
	if _, got, err := e.Parse(); err != nil || got.OnOpen || got.OnList {
		t.Errorf("off: %v %+v", err, got)
	}
	e.Prefetch = "dir"
	if _, got, err := e.Parse(); err != nil || !got.OnOpen || got.OnList {
		t.Errorf("dir: %v %+v", err, got)
	}
	for _, bad := range []EarlySettings{
		{MaxInFlight: 0, MinInFlight: 1},
		{MaxInFlight: 5000, MinInFlight: 1},
		{MaxInFlight: 8, MinInFlight: 1, Warm: []string{"/abs"}},
		{MaxInFlight: 8, MinInFlight: 1, Warm: []string{"a/../../b"}},
		{MaxInFlight: 8, MinInFlight: 1, Prefetch: "dir,nope"},
		{MaxInFlight: 8, MinInFlight: 1, Prefetch: "dir", DirBytes: "0"},
	} {
		if bad.Prefetch == "" {
			bad.Prefetch = "dir"
		}
		if bad.DirBytes == "" {
			bad.DirBytes = "1GiB"
		}
		if _, _, err := bad.Parse(); !errors.Is(err, ErrUsage) {
			t.Errorf("%+v: %v, want a usage error", bad, err)
		}
	}
}
