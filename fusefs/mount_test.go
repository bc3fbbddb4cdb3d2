package fusefs

import (
	"errors"
	"testing"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/rs/zerolog"
)

// A shared mount of a snapshot walked without ACLs would check other users
// against mode bits alone, which may grant what an ACL denies.
func TestSharedMountNeedsACLs(t *testing.T) {
	b := snapshot.NewBuilder()
	b.SetDir(0, []snapshot.Entry{fileEntry("f", 2, 0o644, 1)})
	s, err := b.Build(snapshot.Attr{Mode: snapshot.ModeDir | 0o755, Nlink: 2, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(t.TempDir(), Config{Snapshot: s, Content: pathContent{s}, Logger: zerolog.Nop(), AllowOther: true})
	if !errors.Is(err, ErrNoACLs) {
		t.Fatalf("--allow-other over a snapshot without ACLs: %v, want ErrNoACLs", err)
	}
}
