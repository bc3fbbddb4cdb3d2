package peer

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func mkfifo(p string) error { return unix.Mkfifo(p, 0o600) }

func TestExpandPlainList(t *testing.T) {
	got, err := ExpandList(context.Background(), "127.0.0.2:7070, 127.0.0.3:7071,node4", "7000", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.2:7070", "127.0.0.3:7071", "node4:7000"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// A stand-in for scontrol records what it was asked and answers as
// `scontrol show hostnames node[01-03]` does.
func TestExpandHostlistWithScontrol(t *testing.T) {
	dir := t.TempDir()
	fake := filepath.Join(dir, "scontrol")
	script := "#!/bin/sh\necho \"$@\" > " + filepath.Join(dir, "args") + "\nprintf 'node01\\nnode02\\nnode03\\n'\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := Scontrol
	Scontrol = fake
	t.Cleanup(func() { Scontrol = old })
	for list, port := range map[string]string{"node[01-03]:7070": "9", "node[01-03]": "7070"} {
		got, err := ExpandList(context.Background(), list, port, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"node01:7070", "node02:7070", "node03:7070"}
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", list, got, want)
		}
		args, _ := os.ReadFile(filepath.Join(dir, "args"))
		if string(args) != "show hostnames node[01-03]\n" {
			t.Errorf("scontrol called with %q", args)
		}
	}
	self, err := FindSelf([]string{"node01:7070", "node02:7070"}, "0.0.0.0:7070", "node02.cluster.example")
	if err != nil || self != "node02:7070" {
		t.Errorf("FindSelf: %q, %v", self, err)
	}
}

func TestExpandHostlistWithoutScontrol(t *testing.T) {
	old := Scontrol
	Scontrol = filepath.Join(t.TempDir(), "missing")
	t.Cleanup(func() { Scontrol = old })
	if _, err := ExpandList(context.Background(), "node[1-2]", "1", time.Second); err == nil {
		t.Error("expanded a hostlist without scontrol")
	}
}
