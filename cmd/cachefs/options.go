package main

import (
	"fmt"
	"io"
	"os"
	"strings"

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
