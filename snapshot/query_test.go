package snapshot

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestResolveAndFiles(t *testing.T) {
	s, err := Walk(context.Background(), mkTree(t), WalkOptions{Walkers: 4})
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]error{
		"a/b/c/deep":                      nil,
		"./a/b/../one.txt":                nil,
		"":                                nil,
		"..":                              ErrLeavesRoot,
		"a/../..":                         ErrLeavesRoot,
		"missing":                         ErrNotFound,
		"a/one.txt/x":                     ErrNotDir,
		"link":                            ErrSymlink,
		"link/x":                          ErrSymlink,
		strings.Repeat("n", MaxNameLen+1): ErrLongName,
	} {
		idx, err := s.Resolve(rel)
		if !errors.Is(err, want) {
			t.Errorf("Resolve(%q) = %d, %v; want %v", rel, idx, err, want)
		}
	}
	a, _ := s.Resolve("a")
	deep, _ := s.Resolve("a/b/c/deep")
	files, bytes := s.Files([]uint32{a, deep, a})
	if len(files) != 2 || bytes != int64(len("hello")+len("deep!!")) {
		t.Errorf("Files(a, a/b/c/deep, a) = %v, %d bytes; want a/one.txt and a/b/c/deep once each, 11 bytes", files, bytes)
	}
}
