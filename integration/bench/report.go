package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

type report struct {
	Date             string        `json:"date"`
	Command          string        `json:"command"`
	Cachefs          string        `json:"cachefs_version,omitempty"`
	Kernel           string        `json:"kernel"`
	CPUs             int           `json:"cpus"`
	Go               string        `json:"go"`
	Dataset          dataParams    `json:"dataset"`
	DatasetStats     dataStats     `json:"dataset_stats"`
	Fixture          fixtureJSON   `json:"fixture"`
	Workers          int           `json:"workers"`
	PageCacheDropped bool          `json:"page_cache_dropped"`
	Setups           []setupResult `json:"setups"`
	Storm            []stormResult `json:"import_storm,omitempty"`
}

type fixtureJSON struct {
	MetaLatencyMs   float64 `json:"meta_latency_ms"`
	OpenLatencyMs   float64 `json:"open_latency_ms"`
	ReadLatencyMs   float64 `json:"read_latency_ms"`
	BandwidthBps    int64   `json:"bandwidth_bytes_per_s"` // 0: unlimited
	CacheTimeoutSec float64 `json:"kernel_cache_timeout_s"`
	ReadDirPlus     bool    `json:"readdirplus"`
}

func (b *bench) report(results []setupResult) *report {
	var uts unix.Utsname
	unix.Uname(&uts)
	fx := b.cfg.fixture
	open := fx.OpenLatency
	if open == 0 {
		open = fx.MetaLatency
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i := range results {
		for _, c := range results {
			if c.Setup == "cachefs" && c.Status == "ok" && results[i].Status == "ok" && c.Whole > 0 {
				results[i].VsCachefs = results[i].Whole / c.Whole
			}
		}
	}
	return &report{
		Date:         time.Now().UTC().Format(time.RFC3339),
		Command:      "go run ./integration/bench " + strings.Join(os.Args[1:], " "),
		Cachefs:      b.version,
		Kernel:       unix.ByteSliceToString(uts.Release[:]),
		CPUs:         runtime.NumCPU(),
		Go:           runtime.Version(),
		Dataset:      b.cfg.data,
		DatasetStats: b.stats,
		Fixture: fixtureJSON{MetaLatencyMs: ms(fx.MetaLatency), OpenLatencyMs: ms(open), ReadLatencyMs: ms(fx.ReadLatency),
			BandwidthBps: fx.Bandwidth, CacheTimeoutSec: fx.CacheTimeout.Seconds(), ReadDirPlus: !fx.DisableReadDirPlus},
		Workers:          b.cfg.workers,
		PageCacheDropped: b.noDrop == nil,
		Setups:           results,
	}
}

func (r *report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// print writes the tables as Markdown, so a run pastes straight into
// docs/benchmarks.md.
func (r *report) print(w io.Writer) {
	s, f := r.DatasetStats, r.Fixture
	bw := "unlimited"
	if f.BandwidthBps > 0 {
		bw = fmt.Sprintf("%g MB/s shared", float64(f.BandwidthBps)/1e6)
	}
	dropped := "page cache dropped between setups"
	if !r.PageCacheDropped {
		dropped = "page cache NOT dropped between setups"
	}
	fmt.Fprintf(w, "\n`%s` on Linux %s, %d CPUs, %s, %s", r.Command, r.Kernel, r.CPUs, r.Go, r.Date)
	if r.Cachefs != "" {
		fmt.Fprintf(w, ", cachefs %s", r.Cachefs)
	}
	fmt.Fprint(w, "\n\n")
	fmt.Fprintf(w, "Dataset: %s entries: %d recordings (%s), %d sidecars (%s), %d small files (%s).\n",
		humanize.Comma(int64(s.Entries)), s.Recordings, mib(s.RecordingBytes), s.Sidecars, mib(s.SidecarBytes), s.SmallFiles, mib(s.SmallBytes))
	fmt.Fprintf(w, "Fixture: %g ms per metadata request, %g ms per open, %g ms per read, %s, kernel cache %gs, READDIRPLUS %v. %d reader processes; %s.\n\n",
		f.MetaLatencyMs, f.OpenLatencyMs, f.ReadLatencyMs, bw, f.CacheTimeoutSec, map[bool]string{true: "on", false: "off"}[f.ReadDirPlus], r.Workers, dropped)

	// Seconds per phase.
	fmt.Fprintf(w, "| seconds | %s | whole job | whole job / cachefs |\n|---|%s---:|---:|\n",
		strings.Join(phases, " | "), strings.Repeat("---:|", len(phases)))
	for _, res := range r.Setups {
		cells := make([]string, len(phases))
		for i := range cells {
			cells[i] = "-"
		}
		for i, p := range res.Phases {
			cells[i] = fmt.Sprintf("%.2f", p.Seconds)
		}
		whole, ratio := res.Status, "-"
		if res.Status == "ok" {
			whole = fmt.Sprintf("%.2f", res.Whole)
			if res.VsCachefs > 0 {
				ratio = fmt.Sprintf("%.2fx", res.VsCachefs)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", res.Setup, strings.Join(cells, " | "), whole, ratio)
	}

	// Per phase against the two floors.
	for _, floor := range []string{"floor", "local"} {
		r.printRatios(w, floor)
	}

	// What the shared filesystem paid.
	fmt.Fprintf(w, "\n| source | metadata ops | opens | reads | read from source | read by the job | source / job |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, res := range r.Setups {
		if res.Source == nil {
			continue
		}
		var job int64
		for _, p := range res.Phases {
			job += p.Bytes
		}
		c := res.Source
		perJob := "-"
		if job > 0 {
			perJob = fmt.Sprintf("%.2f", float64(c.BytesRead)/float64(job))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", res.Setup, humanize.Comma(int64(c.Meta)),
			humanize.Comma(int64(c.Opens)), humanize.Comma(int64(c.Reads)), mib(int64(c.BytesRead)), mib(job), perJob)
	}
	for _, res := range r.Setups {
		if res.Status != "ok" {
			fmt.Fprintf(w, "\n%s %s: %s\n", res.Setup, res.Status, res.Reason)
		}
	}
	r.printStorm(w)
}

// printStorm writes the import storm's times, mount or stage-in included,
// with ratios to direct reads and to the storm's floor.
func (r *report) printStorm(w io.Writer) {
	if len(r.Storm) == 0 {
		return
	}
	ref := map[string]float64{}
	// What direct reads fetched is what the imports read (plus the
	// kernel's read-ahead): the amplification's yardstick.
	var directBytes uint64
	for _, s := range r.Storm {
		if s.Error == "" {
			ref[s.Setup] = s.Seconds
		}
		if s.Setup == "direct" && s.Source != nil {
			directBytes = s.Source.BytesRead
		}
	}
	ratio := func(x float64, to string) string {
		if ref[to] == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", x/ref[to])
	}
	fmt.Fprintf(w, "\n| import storm | seconds (mount included) | of which imports | modules' files | direct / this | this / floor | source opens | source metadata ops | source MiB / direct's |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.Storm {
		if s.Error != "" {
			fmt.Fprintf(w, "| %s | failed: %s | | | | | | | |\n", s.Setup, s.Error)
			continue
		}
		opens, meta, amp := "-", "-", "-"
		if s.Source != nil {
			opens, meta = humanize.Comma(int64(s.Source.Opens)), humanize.Comma(int64(s.Source.Meta))
			if d := directBytes; d > 0 {
				amp = fmt.Sprintf("%s = %.2f", mib(int64(s.Source.BytesRead)), float64(s.Source.BytesRead)/float64(d))
			}
		}
		direct := "-"
		if ref["direct"] > 0 {
			direct = fmt.Sprintf("%.2fx", ref["direct"]/s.Seconds)
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %d | %s | %s | %s | %s | %s |\n", s.Setup, s.Seconds, s.Import, s.Modules, direct, ratio(s.Seconds, "floor"), opens, meta, amp)
	}
}

// printRatios writes every setup's phases and whole job as ratios to the
// setup named floor, if it ran.
func (r *report) printRatios(w io.Writer, floor string) {
	var ref *setupResult
	for i := range r.Setups {
		if r.Setups[i].Setup == floor && r.Setups[i].Status == "ok" {
			ref = &r.Setups[i]
		}
	}
	if ref == nil {
		return
	}
	fmt.Fprintf(w, "\n| / %s | %s | whole job |\n|---|%s---:|\n",
		floor, strings.Join(phases[1:], " | "), strings.Repeat("---:|", len(phases)-1))
	for _, res := range r.Setups {
		if res.Status != "ok" {
			continue
		}
		var cells []string
		for i := 1; i < len(phases); i++ {
			cells = append(cells, fmt.Sprintf("%.2fx", res.Phases[i].Seconds/ref.Phases[i].Seconds))
		}
		fmt.Fprintf(w, "| %s | %s | %.2fx |\n", res.Setup, strings.Join(cells, " | "), res.Whole/ref.Whole)
	}
}
