package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/cachefs/cachefs/mounttable"
)

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// DefaultCacheDir derives a per-user, per-source directory on node-local
// storage, so two jobs on one node over different sources never share one.
// It returns the shared parent (tmpdir, else /tmp), where other users may
// create names too, resolved, and the directory below it.
func DefaultCacheDir(tmpdir, src string) (parent, dir string, err error) {
	parent = tmpdir
	if parent == "" {
		parent = "/tmp"
	}
	if parent, err = mounttable.Resolve(parent); err != nil {
		return "", "", err
	}
	h := sha256.Sum256([]byte(src))
	name := unsafeName.ReplaceAllString(filepath.Base(src), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	return parent, filepath.Join(parent, fmt.Sprintf("cachefs-%d", os.Geteuid()), name+"-"+hex.EncodeToString(h[:6])), nil
}
