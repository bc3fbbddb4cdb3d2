package testutil

import (
	"os"
	"testing"
)

// ReadDir lists dir for a check that nothing was written there. A
// directory that cannot be read fails the test: it must not pass for an
// empty one.
func ReadDir(t testing.TB, dir string) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("listing %s: %v", dir, err)
	}
	return ents
}
