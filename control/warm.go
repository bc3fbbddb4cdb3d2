package control

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/snapshot"
)

// WarmPaths turns PATH arguments into paths relative to the mount root. An
// absolute PATH, or a relative one that lands in the mount from the working
// directory, names what it names; any other relative PATH is taken from the
// mount root as it is, so that the daemon resolves its ".." and refuses one
// that would leave the mount.
func WarmPaths(mnt string, args []string) ([]string, error) {
	var out []string
	for _, p := range args {
		for _, part := range strings.Split(p, "/") {
			if len(part) > snapshot.MaxNameLen {
				return nil, fmt.Errorf("%s %w", p, snapshot.ErrLongName)
			}
		}
		abs, err := filepath.Abs(p)
		switch {
		case err == nil && mounttable.Within(abs, mnt):
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(abs, mnt), "/"))
		case filepath.IsAbs(p):
			return nil, fmt.Errorf("%s is not inside the mount %s", p, mnt)
		default:
			out = append(out, p)
		}
	}
	return out, nil
}
