package blockcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// otherUser creates an ordinary user for the test and returns a function
// that runs a command as that user. The user is removed at cleanup.
func otherUser(t *testing.T) func(name string, args ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("planting files as another user needs root, and CI runs as root")
		}
		t.Skip("needs root to create a user")
	}
	name := fmt.Sprintf("cft%d-cache", os.Getpid())
	var out []byte
	var err error
	for try := 0; try < 20; try++ {
		// useradd fails while another useradd holds /etc/passwd.
		out, err = exec.Command("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err == nil || bytes.Contains(out, []byte("already exists")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil && !bytes.Contains(out, []byte("already exists")) {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() {
		for try := 0; try < 20; try++ {
			if exec.Command("userdel", name).Run() == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Errorf("userdel %s failed", name)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return func(cmd string, args ...string) {
		t.Helper()
		c := exec.Command(cmd, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("as %s: %s %v: %v: %s", name, cmd, args, err, out)
		}
	}
}

// traversable returns a new directory every user can pass through (and
// none but root can write in).
func traversable(t *testing.T) string {
	d := t.TempDir()
	for p := d; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o711)
	}
	return d
}

// victim is a root-owned file outside the cache that must never change.
func victim(t *testing.T, dir, name string) (path string, check func()) {
	path = filepath.Join(dir, name)
	orig := []byte("ORIGINAL root-owned content, do not touch\n")
	if err := os.WriteFile(path, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func() {
		t.Helper()
		if b, _ := os.ReadFile(path); !bytes.Equal(b, orig) {
			t.Errorf("%s outside the cache was written: %d bytes, starting %.40q", path, len(b), b)
		}
	}
}

// TestPlantedCacheDirRefused: a cache directory another user made (with a
// symlink planted at the lock file's name) is refused before anything is
// opened in it.
func TestPlantedCacheDirRefused(t *testing.T) {
	as := otherUser(t)
	base := traversable(t)
	shared := filepath.Join(base, "shared")
	os.Mkdir(shared, 0o777)
	os.Chmod(shared, 0o1777)
	target, unchanged := victim(t, base, "target")
	dir := filepath.Join(shared, "cache")
	as("mkdir", "-p", filepath.Join(dir, "blocks"))
	as("ln", "-s", target, filepath.Join(dir, "lock"))
	src := newSource(map[string]int{"a": 4096})
	if c, err := Open(Options{Dir: dir, Logger: zerolog.Nop()}, src); !errors.Is(err, ErrUnsafeDir) {
		if err == nil {
			c.Close()
		}
		t.Errorf("open of another user's cache directory: %v, want ErrUnsafeDir", err)
	}
	unchanged()

	// A blocks directory swapped for a symlink is refused too.
	mine := filepath.Join(base, "mine")
	os.Mkdir(mine, 0o700)
	os.Symlink(filepath.Join(dir, "blocks"), filepath.Join(mine, "blocks"))
	if c, err := Open(Options{Dir: mine, Logger: zerolog.Nop()}, src); !errors.Is(err, ErrUnsafeDir) {
		if err == nil {
			c.Close()
		}
		t.Errorf("open with blocks a symlink: %v, want ErrUnsafeDir", err)
	}
}

// TestPlantedDataFilesNeverWritten: with a blocks subdirectory left
// writable by others, another user plants a symlink at one file's data
// name, one at its log name, and a file of their own at the data name of a
// root-only file. Reading both as root serves correct bytes, writes
// nothing outside the cache, and puts no byte in the planted file.
func TestPlantedDataFilesNeverWritten(t *testing.T) {
	as := otherUser(t)
	base := traversable(t)
	target, unchanged := victim(t, base, "target")
	target2, unchanged2 := victim(t, base, "target2")
	src := newSource(map[string]int{"a": 4096 * 3, "secret": 4096})
	dir := filepath.Join(base, "cache")
	for _, d := range []string{dir, filepath.Join(dir, "blocks")} {
		os.Mkdir(d, 0o711)
		os.Chmod(d, 0o711)
	}
	ka, ks := key(src, "a").name(), key(src, "secret").name()
	for _, n := range []string{ka, ks} {
		sub := filepath.Join(dir, "blocks", n[:2])
		os.Mkdir(sub, 0o777)
		os.Chmod(sub, 0o777)
	}
	sub := func(n string) string { return filepath.Join(dir, "blocks", n[:2], n) }
	as("ln", "-s", target, sub(ka))
	as("ln", "-s", target2, sub(ka)+".present")
	as("sh", "-c", "umask 0; : > "+sub(ks))

	c := open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	for _, name := range []string{"a", "secret"} {
		h, err := c.OpenFile(key(src, name))
		if err != nil {
			t.Fatal(err)
		}
		p := make([]byte, len(src.files[name]))
		if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(p) || !bytes.Equal(p, src.files[name]) {
			t.Errorf("%s: read %d bytes (%v)", name, n, err)
		}
		h.Close()
	}
	unchanged()
	unchanged2()
	if fi, err := os.Lstat(sub(ks)); err != nil || fi.Size() != 0 {
		t.Errorf("the file planted at the data name of a root-only file received bytes (%v)", err)
	}
}

// TestPlantedAfterOpenNeverWritten: a file opened while nothing of it is
// cached remembers that, so its first store creates the cache files
// without looking again; a symlink another user plants at the data name
// in between makes that create fail, never receive bytes, and the read
// still serves the source's bytes.
func TestPlantedAfterOpenNeverWritten(t *testing.T) {
	as := otherUser(t)
	base := traversable(t)
	target, unchanged := victim(t, base, "target")
	src := newSource(map[string]int{"a": 4096 * 3})
	dir := filepath.Join(base, "cache")
	for _, d := range []string{dir, filepath.Join(dir, "blocks")} {
		os.Mkdir(d, 0o711)
		os.Chmod(d, 0o711)
	}
	ka := key(src, "a").name()
	sub := filepath.Join(dir, "blocks", ka[:2])
	os.Mkdir(sub, 0o777)
	os.Chmod(sub, 0o777)

	c := open(t, dir, src, Options{ReadAhead: -1})
	defer c.Close()
	h, err := c.OpenFile(key(src, "a"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	as("ln", "-s", target, filepath.Join(sub, ka))
	p := make([]byte, len(src.files["a"]))
	if n, err := h.ReadAt(context.Background(), p, 0); err != nil || n != len(p) || !bytes.Equal(p, src.files["a"]) {
		t.Errorf("read %d bytes (%v)", n, err)
	}
	unchanged()
}
