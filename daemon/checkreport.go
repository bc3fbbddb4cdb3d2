package daemon

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
)

// ErrDiffers: an index checked against its source differs from it.
var ErrDiffers = errors.New("index differs")

// Report is what `cachefs snapshot --check` shows: a line of figures, then
// the differences listed, and how many more there are of each kind.
func (c Checked) Report() string {
	info, d := c.Info, c.Diff
	var b strings.Builder
	fmt.Fprintf(&b, "cachefs: index %s (walked %s ago on %s, %s entries, %d unreadable) vs %s now (%s entries walked in %.2fs, %d unreadable): %s added, %s removed, %s changed\n",
		c.Index, RoundAge(info.Age(time.Now())), orUnknown(info.Host), humanize.Comma(info.Stats.Entries), info.Stats.Errors,
		c.Source, humanize.Comma(c.Now.Entries), c.Seconds, c.Now.Errors,
		humanize.Comma(d.Added), humanize.Comma(d.Removed), humanize.Comma(d.Changed))
	list := func(kind string, es []snapshot.DiffEntry, total int64) {
		var n int64
		for _, e := range es {
			fmt.Fprintf(&b, "%-8s %s", kind, showPath(e.Path))
			switch {
			case e.What != 0:
				b.WriteString(" (" + e.What.String() + ")")
			case e.Entries > 1:
				fmt.Fprintf(&b, " (and %s entries below)", humanize.Comma(e.Entries-1))
			}
			b.WriteString("\n")
			n += e.Entries
		}
		if total > n {
			fmt.Fprintf(&b, "%-8s ... %s more entries (--show to list more)\n", kind, humanize.Comma(total-n))
		}
	}
	list("added", d.AddedPaths, d.Added)
	list("removed", d.RemovedPaths, d.Removed)
	list("changed", d.ChangedPaths, d.Changed)
	return b.String()
}

// Err is of kind ErrDiffers if the index differs from its source.
func (c Checked) Err() error {
	d := c.Diff
	if d.Same() {
		return nil
	}
	return fail(ErrDiffers, fmt.Errorf("index %s differs from %s (%d added, %d removed, %d changed); rebuild with 'cachefs snapshot %s -o %s'",
		c.Index, c.Source, d.Added, d.Removed, d.Changed, c.Source, c.Index))
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown host"
	}
	return s
}

// showPath prints a path as it is, unless it holds bytes a terminal would
// mangle; the root is ".".
func showPath(p string) string {
	if p == "" {
		return "."
	}
	if !utf8.ValidString(p) || strings.ContainsFunc(p, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(p)
	}
	return p
}
