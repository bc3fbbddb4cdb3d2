package peer

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestSecretCreatedOnceByRacingNodes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peer.secret")
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := LoadSecret(path)
			if err != nil {
				t.Error(err)
			}
			got[i] = s
		}()
	}
	wg.Wait()
	for _, s := range got[1:] {
		if !bytes.Equal(s, got[0]) {
			t.Fatalf("nodes read different secrets: %q and %q", got[0], s)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode %v, want 0600", fi.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestUnsafeSecretFileRefused(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if err := os.WriteFile(good, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	os.Chmod(loose, 0o640)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	os.Chown(other, 4242, 4242)
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{loose, link, short, other, fifo} {
		if _, err := LoadSecret(p); !errors.Is(err, ErrSecretFile) {
			t.Errorf("%s: %v, want ErrSecretFile", filepath.Base(p), err)
		}
	}
	if _, err := LoadSecret(good); err != nil {
		t.Errorf("good secret file: %v", err)
	}
}
