package main

import (
	"testing"
)

// CACHEFS_RUNTIME_DIR wins over root's /run/cachefs and XDG_RUNTIME_DIR,
// so suites on one machine keep their records apart.
func TestRuntimeDirOverride(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/xdg")
	t.Setenv("CACHEFS_RUNTIME_DIR", "/tmp/suite//run/")
	if got := runtimeDir().Path(); got != "/tmp/suite/run" {
		t.Errorf("runtime dir %q, want /tmp/suite/run", got)
	}
	t.Setenv("CACHEFS_RUNTIME_DIR", "")
	if got := runtimeDir().Path(); got == "/tmp/suite/run" {
		t.Errorf("an empty CACHEFS_RUNTIME_DIR still overrides: %q", got)
	}
}
