package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cachefs/cachefs/control"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/privdir"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
)

// globalOptions are the flags every command takes.
type globalOptions struct {
	logLevel  string
	logFormat string
}

func (g *globalOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&g.logFormat, "log-format", "console", "log format: console or json")
}

// logger builds the zerolog logger writing to w.
func (g *globalOptions) logger(w io.Writer) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(strings.ToLower(g.logLevel))
	if err != nil || g.logLevel == "" {
		return zerolog.Nop(), usageError(fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel))
	}
	switch g.logFormat {
	case "json":
	case "console":
		color := false
		if f, ok := w.(*os.File); ok {
			color = isatty.IsTerminal(f.Fd())
		}
		w = zerolog.ConsoleWriter{Out: w, NoColor: !color, TimeFormat: "2006-01-02T15:04:05.000Z07:00"}
	default:
		return zerolog.Nop(), usageError(fmt.Errorf("--log-format %q: want console or json", g.logFormat))
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// runtimeDir says where this user's mounts leave their records. Root's is
// /run/cachefs whatever the session: a job prologue has no
// XDG_RUNTIME_DIR, and root's later interactive shell must find its records.
// Others use $XDG_RUNTIME_DIR/cachefs or, failing that, a directory of
// their own under the shared TMPDIR. CACHEFS_RUNTIME_DIR overrides all of
// them, for a site that keeps records elsewhere and for test suites that
// must not see each other's mounts; it is checked like any other.
func runtimeDir() control.RuntimeDir {
	if d := os.Getenv("CACHEFS_RUNTIME_DIR"); d != "" {
		d = filepath.Clean(d)
		return control.RuntimeDir{Parent: filepath.Dir(d), Names: []string{filepath.Base(d)}}
	}
	if os.Geteuid() == 0 {
		if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
			return control.RuntimeDir{Parent: "/run", Names: []string{"cachefs"}}
		}
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return control.RuntimeDir{Parent: d, Names: []string{"cachefs"}}
	}
	return control.RuntimeDir{Parent: os.TempDir(), Names: []string{fmt.Sprintf("cachefs-%d", os.Geteuid()), "run"}}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// defaultCacheDir derives a per-user, per-source directory on node-local
// storage, so two jobs on one node over different sources never share one.
// It returns the shared parent ($TMPDIR, else /tmp), where other users may
// create names too, resolved, and the directory below it.
func defaultCacheDir(src string) (parent, dir string, err error) {
	parent = os.Getenv("TMPDIR")
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

// readRecord reads the runtime record of the mount at mnt, saying on
// stderr when one is ignored because another user could have made it.
func readRecord(mnt string) (*control.Record, error) {
	r, err := runtimeDir().Read(mnt)
	return r, warnForeign(err)
}

// warnForeign says on stderr that a record or its directory is ignored
// because another user could have made it; callers treat it as missing.
func warnForeign(err error) error {
	if errors.Is(err, privdir.ErrNotPrivate) {
		fmt.Fprintf(os.Stderr, "cachefs: warning: ignoring the runtime record: %v\n", err)
	}
	return err
}

// removeRecord removes the record of the mount at mnt, if any. A record
// that stays is harmless: readers check that its daemon runs.
func removeRecord(mnt string) {
	_ = os.Remove(runtimeDir().RecordPath(mnt))
}
