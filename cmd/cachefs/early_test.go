package main

import "testing"

func TestEarlyOptionsCheck(t *testing.T) {
	e := earlyOptions{maxInFlight: 8, minInFlight: 16}
	if err := e.check("dir,list"); err != nil {
		t.Fatal(err)
	}
	if e.minInFlight != 8 || !e.onOpen || !e.onList {
		t.Errorf("got %+v, want min lowered to 8, both policies on", e)
	}
	if e.listMaxBytes(1<<20) != 1<<20 {
		t.Errorf("listing should queue files of up to one block")
	}
	e = earlyOptions{maxInFlight: 64, minInFlight: 16}
	if err := e.check("off"); err != nil || e.onOpen || e.onList || e.listMaxBytes(1<<20) != 0 {
		t.Errorf("off: %v %+v", err, e)
	}
	for _, bad := range []earlyOptions{
		{maxInFlight: 0, minInFlight: 1},
		{maxInFlight: 5000, minInFlight: 1},
		{maxInFlight: 8, minInFlight: 1, warm: []string{"/abs"}},
		{maxInFlight: 8, minInFlight: 1, warm: []string{"a/../../b"}},
	} {
		if err := bad.check("dir"); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	e = earlyOptions{maxInFlight: 8, minInFlight: 1}
	if err := e.check("dir,nope"); err == nil {
		t.Error("--prefetch dir,nope accepted")
	}
}
