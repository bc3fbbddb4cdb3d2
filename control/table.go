package control

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cachefs/cachefs/peer"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/dustin/go-humanize"
)

// Table is the status of one mount as `cachefs status` shows it: a row
// per aspect, the figures in words.
func (r *StatusReply) Table() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	c := r.Cache
	s := r.Snapshot
	fmt.Fprintf(tw, "mountpoint\t%s\n", r.Mountpoint)
	fmt.Fprintf(tw, "source\t%s\n", r.Source)
	fmt.Fprintf(tw, "cache dir\t%s\n", r.CacheDir)
	fmt.Fprintf(tw, "daemon\tpid %d, up %s, log %s\n", r.Pid, time.Duration(r.UptimeSeconds*1e9).Round(time.Second), r.LogFile)
	fmt.Fprintf(tw, "snapshot\t%s entries (%s dirs, %s files), %s, %d unreadable\n",
		humanize.Comma(s.Entries), humanize.Comma(s.Dirs), humanize.Comma(s.Files), humanize.IBytes(uint64(s.Bytes)), s.Errors)
	budget := "no limit"
	if c.Budget > 0 {
		budget = humanize.IBytes(uint64(c.Budget))
	}
	fmt.Fprintf(tw, "cache\t%s used of %s; %s block hits, %s misses; %d evictions\n",
		humanize.IBytes(uint64(c.Usage)), budget, humanize.Comma(c.Hits), humanize.Comma(c.Misses), c.Evictions)
	if c.Verified > 0 || c.Corrupt > 0 {
		fmt.Fprintf(tw, "checked\t%s blocks read back against their checksums, %s damaged and fetched again\n",
			humanize.Comma(c.Verified), humanize.Comma(c.Corrupt))
	}
	fmt.Fprintf(tw, "traffic\t%s from the source, %s served in %s opens, %d errors\n",
		humanize.IBytes(uint64(c.BytesFromSource)), humanize.IBytes(uint64(r.BytesServed)), humanize.Comma(r.Opens), r.Errors)
	if p := r.Prefetch; p != nil {
		fmt.Fprintf(tw, "prefetch\t%d queued, %d running (limit %d of %d), %s files done (%s)\n", p.Queued, p.Running, p.InFlight, p.MaxInFlight, humanize.Comma(p.Done), humanize.IBytes(uint64(p.Bytes)))
		if w := p.Warm; w != nil {
			fmt.Fprintf(tw, "warm\t%s\n", warmLine(w))
		}
	} else {
		fmt.Fprintf(tw, "prefetch\toff\n")
	}
	pt := "off"
	if r.Passthrough {
		pt = fmt.Sprintf("on (%s opens)", humanize.Comma(c.PassthroughOffered))
	}
	fmt.Fprintf(tw, "passthrough\t%s\n", pt)
	if r.OpenMode != "" {
		fmt.Fprintf(tw, "opens\t%s\n", r.OpenMode)
	}
	if w := r.Writable; w != nil {
		fmt.Fprintf(tw, "writable\t%s changed files (%s) not pushed yet, in %s\n", humanize.Comma(w.Files), humanize.IBytes(uint64(w.Bytes)), w.Upper)
	}
	peerRows(tw, r.Peers)
	_ = tw.Flush() // into memory
	return b.String()
}

// peerRows are the peer lines of the table.
func peerRows(w io.Writer, p *peer.Stats) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "peers\tthis node %s: %s read from the source, %s from peers, %s served to peers; %d requests refused, %d answers rejected\n",
		p.Self, humanize.IBytes(uint64(p.BytesFromSource)), humanize.IBytes(uint64(p.BytesFromPeers)),
		humanize.IBytes(uint64(p.BytesToPeers)), p.Refused, p.Rejected)
	for _, ps := range p.Peers {
		state := "answering"
		if ps.Avoided {
			state = "avoided"
		}
		fmt.Fprintf(w, "\t%s: %s from it, %s served to its address, %d failures, %s\n",
			ps.Addr, humanize.IBytes(uint64(ps.FromPeer)), humanize.IBytes(uint64(ps.ServedTo)), ps.Failures, state)
	}
}

// warmLine is the progress of --warm as status shows it.
func warmLine(w *prefetch.WarmStats) string {
	state := ""
	switch {
	case w.Listing:
		return "gathering the files to stage"
	case w.Stopped:
		state = "; stopped: no room in the cache without evicting what the job read"
	case w.Done+w.Failed >= w.Files:
		state = "; done"
	}
	return fmt.Sprintf("%s of %s files staged (%s fetched of %s)%s", humanize.Comma(w.Done), humanize.Comma(w.Files),
		humanize.IBytes(uint64(w.Bytes)), humanize.IBytes(uint64(w.TotalBytes)), state)
}
