package peer

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrSecretFile means the secret file is unsafe or unusable.
var ErrSecretFile = errors.New("peer secret file refused")

// minSecret is the fewest bytes a secret may have: 128 bits.
const minSecret = 16

// LoadSecret reads the job's shared secret from path, creating it (mode
// 0600, 32 random bytes, hex) if it does not exist. Every node of the job
// calls it at once on a shared filesystem, so creation writes a temporary
// file and links it into place: link fails if another node won, and then
// that node's secret is read, never a half-written one.
//
// The file must be a regular file owned by the effective uid with no group
// or other permission bits: anyone else who could read it could talk to
// the job's peers as the job.
func LoadSecret(path string) ([]byte, error) {
	s, err := readSecret(path)
	if !errors.Is(err, os.ErrNotExist) {
		return s, err
	}
	if err := createSecret(path); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("%w: creating %s: %w", ErrSecretFile, path, err)
	}
	return readSecret(path)
}

func readSecret(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return nil, fmt.Errorf("%w: %s is a symlink", ErrSecretFile, path)
		}
		return nil, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, err
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrSecretFile, path)
	case int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("%w: %s belongs to uid %d, not to uid %d", ErrSecretFile, path, st.Uid, os.Geteuid())
	case st.Mode&0o077 != 0:
		return nil, fmt.Errorf("%w: %s has mode %#o; others must not read it (chmod 600)", ErrSecretFile, path, st.Mode&0o777)
	}
	raw, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, err
	}
	s := bytes.TrimSpace(raw)
	if len(s) < minSecret {
		return nil, fmt.Errorf("%w: %s holds %d bytes; want at least %d", ErrSecretFile, path, len(s), minSecret)
	}
	return s, nil
}

func createSecret(path string) error {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return err
	}
	// A random name: nodes of the job may share pids.
	var r [8]byte
	rand.Read(r[:])
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(r[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	// Gone after the rename; left only by a failed write, whose error is
	// the one to report.
	defer func() { _ = os.Remove(tmp) }()
	_, err = f.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Link(tmp, path)
}
