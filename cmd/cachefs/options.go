package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cachefs/cachefs/control"
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

// runtimeDir says where this user's mounts leave their records
// (control.RuntimeDirFor), from the environment.
func runtimeDir() control.RuntimeDir {
	return control.RuntimeDirFor(os.Getenv("CACHEFS_RUNTIME_DIR"), os.Getenv("XDG_RUNTIME_DIR"), os.TempDir())
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
