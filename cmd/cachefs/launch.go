package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"

	"github.com/cachefs/cachefs/daemon"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
)

// launch starts the daemon with the flags the user set and shows its
// progress until the mount serves or the daemon fails. A nonzero
// deathSignal is sent to the daemon when the thread that launched it dies.
func launch(ctx context.Context, c daemon.Config, flags []string, deathSignal syscall.Signal, term *termReporter) error {
	defer term.clear()
	l := daemon.Launch{Args: append([]string{"mount", c.Source, c.Mountpoint, "--foreground", "--ready-fd=3"}, flags...),
		Mountpoint: c.Mountpoint, Runtime: c.Runtime, DeathSignal: deathSignal}
	return l.Start(ctx, term)
}

// termReporter draws a one-line progress counter when stderr is a terminal
// and stays silent otherwise, so batch logs get only the summary: a line
// on stdout or, with json, daemon.Ready as one JSON object there and the
// line on stderr (unless noLine: cachefs run, whose stdout is stderr).
type termReporter struct {
	tty          bool
	drawn        bool
	json, noLine bool
}

func newTermReporter() *termReporter {
	return &termReporter{tty: isatty.IsTerminal(os.Stderr.Fd())}
}

func (t *termReporter) Progress(m snapshot.Counts) {
	t.draw("walking source: %s entries, %s dirs, %s, %d unreadable",
		humanize.Comma(m.Entries), humanize.Comma(m.Dirs), humanize.IBytes(uint64(m.Bytes)), m.Errors)
}

// draw replaces the progress line on a terminal.
func (t *termReporter) draw(format string, args ...any) {
	if !t.tty {
		return
	}
	fmt.Fprintf(os.Stderr, "\r\033[K"+format, args...)
	t.drawn = true
}

func (t *termReporter) clear() {
	if t.drawn {
		fmt.Fprint(os.Stderr, "\r\033[K")
		t.drawn = false
	}
}

func (t *termReporter) Ready(r daemon.Ready) {
	t.clear()
	if !t.json {
		fmt.Println(r.Summary())
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // plain strings and numbers
	}
	fmt.Println(string(b))
	if !t.noLine {
		fmt.Fprintln(os.Stderr, r.Summary())
	}
}
