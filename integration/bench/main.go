// Command bench is the cachefs benchmark harness: it runs one dataloader-like
// workload through cachefs and through the ways jobs read a shared
// filesystem without it, side by side in one run, and reports the times as
// ratios.
//
//	go run ./integration/bench [--quick] [--setups direct,cachefs,...] [--json FILE]
//
// # The job
//
// The harness builds cachefs, generates a BIDS-like EEG tree (datasets,
// subjects, runs with a binary recording and JSON/TSV sidecars each, plus a
// flat directory of small files) once into --workdir, and then, for each
// setup in turn, mounts a fresh slow-source fixture (integration/slowfs)
// over the tree, makes the tree readable the setup's way (the timed "mount"
// phase: nothing, an rsync or tar stage-in, rclone mount, cachefs mount),
// and times the workload phases with several reader processes: scan (stat
// everything, list every directory, read every sidecar), peek (the first
// 4 KiB of every recording), epoch1 and epoch2 (every recording in full, in
// seeded shuffled orders), small (every small file). The fixture's counts
// tell what each setup cost the shared filesystem.
//
// Two setups bound the rest from below: floor copies every file of the
// job's list with 128 in flight (no walk: the list is known up front) and
// then runs the job on local disk, the fastest any stage-in can be; local
// runs the job on the dataset itself, with no source at all. The cachefs
// variants (cachefsVariants) differ only in flags, so each policy's gain
// is measured side by side.
//
// After the job, the import storm (imports.go) times a Python interpreter
// importing packages from a tree on the slow source, mount included, for
// the setups that have it, against its own floor.
//
// # Invariants
//
//   - Every setup reads the same bytes: each phase's checksum is a sum of
//     per-item digests, independent of order and of the split among
//     workers, and must be equal across setups; otherwise the run exits
//     non-zero naming the setup and phase.
//   - Every setup starts cold: a fresh fixture mount (so the kernel's caches
//     of it are empty) and a dropped page cache. Phases within a setup share
//     caches on purpose: epoch2 measures the warm case.
//   - Nothing outlives the run: every mount is torn down in reverse order,
//     on success, failure or SIGINT, and the run ends by checking
//     /proc/self/mountinfo for anything left under its directory. Only
//     processes this harness started are ever signalled, by pid.
//   - The dataset is a pure function of its parameters, so a marker with
//     equal parameters is enough to reuse it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/mounttable"

	"github.com/cachefs/cachefs/integration/slowfs"
	"golang.org/x/sys/unix"
)

// phases in the order they run; "mount" is the setup's own preparation.
var phases = []string{"mount", "scan", "peek", "epoch1", "epoch2", "small"}

type config struct {
	workdir, jsonOut string
	cpuProfiles      string // directory for the daemons' CPU profiles
	stormSite        string // Python packages to copy for the import storm
	stormModules     string // what the storm imports; "" skips it
	quick            bool
	stormOnly        bool // skip the job's setups, run only the import storm
	setups           []string
	workers          int
	data             dataParams
	fixture          slowfs.Options
}

type bench struct {
	cfg     config
	exe     string // this binary, re-executed as the reader processes
	run     string // scratch for this run, removed at the end
	data    string
	stats   dataStats
	lists   map[string]string // phase -> work list file
	cachefs string            // the binary under test
	version string            // its commit, "+dirty" for uncommitted changes

	ref       map[string]sums   // phase -> checksum every setup must match
	refSetup  map[string]string // phase -> setup that set ref
	noDrop    error             // why the page cache could not be dropped
	stormTree string            // the import storm's tree, local
	// indexes maps a mount's name to the snapshot index it mounts from,
	// made before its timer starts (see fromIndex).
	indexes map[string]string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := workerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench worker:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		os.Exit(2)
	}
	ctx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runMain(ctx, cfg)
	stopSignals()
	os.Exit(code)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func parseFlags(args []string) (config, error) {
	f := flag.NewFlagSet("bench", flag.ContinueOnError)
	c := config{fixture: slowfs.Options{DisableReadDirPlus: true}}
	f.StringVar(&c.workdir, "workdir", filepath.Join(os.TempDir(), "cachefs-bench"), "where the dataset is kept between runs and scratch space goes (local disk)")
	f.StringVar(&c.jsonOut, "json", "", "also write every number to this JSON file")
	f.StringVar(&c.cpuProfiles, "cpuprofile-dir", "", "write each cachefs daemon's CPU profile to DIR/SETUP.pprof (for go tool pprof)")
	f.StringVar(&c.stormSite, "import-site", "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages", "site-packages the import storm's tree is copied from (the top-level packages its imports load)")
	f.StringVar(&c.stormModules, "import-modules", "IPython,boto3,yaml,attr", "comma-separated modules the import storm imports; empty skips the storm")
	f.BoolVar(&c.stormOnly, "storm-only", false, "run only the import storm for the given setups, not the job")
	f.BoolVar(&c.quick, "quick", false, "small dataset for CI-like checks (dataset flags given explicitly still win)")
	setups := f.String("setups", strings.Join(allSetups, ","), "comma-separated setups to run, in this order")
	f.IntVar(&c.workers, "workers", 4, "reader processes per phase")
	d := &c.data
	f.IntVar(&d.Datasets, "datasets", 2, "BIDS datasets")
	f.IntVar(&d.Subjects, "subjects", 25, "subjects per dataset")
	f.IntVar(&d.Runs, "runs", 20, "runs per subject (one recording and three sidecars each)")
	f.IntVar(&d.RecMinKiB, "recording-min-kib", 256, "smallest recording, KiB")
	f.IntVar(&d.RecMaxKiB, "recording-max-kib", 512, "largest recording, KiB")
	f.IntVar(&d.SmallFiles, "small-files", 20000, "files in images/")
	f.IntVar(&d.SmallSize, "small-size", 4096, "bytes per small file")
	f.Uint64Var(&d.Seed, "seed", 1, "seed for contents and shuffles")
	f.DurationVar(&c.fixture.MetaLatency, "meta-latency", time.Millisecond, "fixture latency per metadata request")
	f.DurationVar(&c.fixture.ReadLatency, "read-latency", 500*time.Microsecond, "fixture latency per read request")
	f.DurationVar(&c.fixture.OpenLatency, "open-latency", 0, "fixture latency per open (0: the metadata latency)")
	bw := f.Float64("bandwidth", 200, "fixture read bandwidth shared by all readers, MB/s (10^6 bytes); 0 = unlimited")
	f.DurationVar(&c.fixture.CacheTimeout, "fixture-cache-timeout", time.Hour, "how long the kernel caches the fixture's metadata (an NFS client's attribute cache)")
	if err := f.Parse(args); err != nil {
		return c, err
	}
	if f.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", f.Args())
	}
	if c.quick {
		given := map[string]bool{}
		f.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
		for name, v := range map[string]int{"datasets": 1, "subjects": 4, "runs": 12, "small-files": 2000} {
			if !given[name] {
				f.Set(name, fmt.Sprint(v))
			}
		}
	}
	d.Layout = layoutVersion
	c.fixture.Bandwidth = int64(*bw * 1e6)
	for _, s := range strings.Split(*setups, ",") {
		if s = strings.TrimSpace(s); !slices.Contains(allSetups, s) {
			return c, fmt.Errorf("--setups: unknown setup %q (have %s)", s, strings.Join(allSetups, ","))
		}
		if slices.Contains(c.setups, s) {
			return c, fmt.Errorf("--setups: %s given twice", s)
		}
		c.setups = append(c.setups, s)
	}
	switch {
	case c.workers < 1:
		return c, errors.New("--workers must be at least 1")
	case d.Datasets < 0 || d.Subjects < 0 || d.Runs < 0 || d.SmallFiles < 0 || d.SmallSize < 0:
		return c, errors.New("dataset sizes must not be negative")
	case d.RecMinKiB < 0 || d.RecMaxKiB < d.RecMinKiB:
		return c, errors.New("want 0 <= --recording-min-kib <= --recording-max-kib")
	case *bw < 0:
		return c, errors.New("--bandwidth must not be negative")
	}
	return c, nil
}

func runMain(ctx context.Context, cfg config) (code int) {
	b := &bench{cfg: cfg, ref: map[string]sums{}, refSetup: map[string]string{}, indexes: map[string]string{}}
	fail := func(err error) int {
		if ctx.Err() != nil {
			progress("interrupted")
			return 130
		}
		progress("%v", err)
		return 1
	}
	var err error
	if b.exe, err = os.Executable(); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(cfg.workdir, 0o755); err != nil {
		return fail(err)
	}
	if b.data, b.stats, err = ensureDataset(ctx, cfg.workdir, cfg.data); err != nil {
		return fail(fmt.Errorf("dataset: %w", err))
	}
	if b.run, err = os.MkdirTemp(cfg.workdir, "run-"); err != nil {
		return fail(err)
	}
	defer func() {
		if err := b.sweep(); err != nil {
			progress("%v", err)
			if code == 0 {
				code = 1
			}
		}
	}()
	if b.lists, err = writeLists(b.run, cfg.data); err != nil {
		return fail(err)
	}
	if slices.ContainsFunc(cfg.setups, func(s string) bool { return strings.HasPrefix(s, "cachefs") }) {
		if b.cachefs, err = buildCachefs(ctx, b.run); err != nil {
			return fail(fmt.Errorf("building cachefs: %w", err))
		}
		b.version = sourceVersion(ctx)
	}

	var results []setupResult
	var failed []string
	for _, s := range cfg.setups {
		if cfg.stormOnly {
			break
		}
		r := b.runSetup(ctx, s)
		results = append(results, r)
		if r.Status == "failed" {
			failed = append(failed, fmt.Sprintf("%s: %s", s, r.Reason))
		}
		if ctx.Err() != nil {
			break
		}
	}
	storm := b.importStorm(ctx)
	rep := b.report(results)
	rep.Storm = storm
	rep.print(os.Stdout)
	if cfg.jsonOut != "" {
		if err := rep.writeJSON(cfg.jsonOut); err != nil {
			failed = append(failed, err.Error())
		}
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	if len(failed) > 0 {
		return fail(fmt.Errorf("FAILED:\n  %s", strings.Join(failed, "\n  ")))
	}
	return 0
}

type setupResult struct {
	Setup     string        `json:"setup"`
	Status    string        `json:"status"` // ok, skipped or failed
	Reason    string        `json:"reason,omitempty"`
	Phases    []phaseResult `json:"phases"`
	Whole     float64       `json:"whole_job_seconds,omitempty"`
	VsCachefs float64       `json:"whole_job_ratio_to_cachefs,omitempty"`
	// Source is what the fixture served over the setup's whole run; nil
	// for local, which reads the dataset without a fixture.
	Source *sourceCounts `json:"source,omitempty"`
}

type phaseResult struct {
	Phase    string        `json:"phase"`
	Seconds  float64       `json:"seconds"`
	Items    int64         `json:"items,omitempty"`
	Bytes    int64         `json:"bytes_read,omitempty"`
	Checksum string        `json:"checksum,omitempty"`
	Source   *sourceCounts `json:"source,omitempty"`
}

type sourceCounts struct {
	Meta      uint64            `json:"metadata_ops"`
	Opens     uint64            `json:"opens"`
	Reads     uint64            `json:"reads"`
	BytesRead uint64            `json:"bytes_read"`
	Ops       map[string]uint64 `json:"ops,omitempty"`
}

func (b *bench) runSetup(ctx context.Context, name string) setupResult {
	res := setupResult{Setup: name}
	if miss := missingTools(name); len(miss) > 0 {
		progress("%s: skipped: %s not found (apt-get install -y rsync rclone fuse3)", name, strings.Join(miss, ", "))
		res.Status, res.Reason = "skipped", strings.Join(miss, ", ")+" not found"
		return res
	}
	b.dropCaches()
	var cl cleanups
	err := b.measure(ctx, name, &res, &cl)
	if cerr := cl.run(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("teardown: %w", cerr))
	}
	if err != nil {
		res.Status, res.Reason = "failed", err.Error()
		progress("%s: FAILED: %v", name, err)
		return res
	}
	res.Status = "ok"
	for _, p := range res.Phases {
		res.Whole += p.Seconds
	}
	progress("%s: whole job %.2fs", name, res.Whole)
	return res
}

// measure runs the phases of one setup, pushing every teardown onto cl.
func (b *bench) measure(ctx context.Context, name string, res *setupResult, cl *cleanups) error {
	src := b.data
	var fix *slowfs.FS
	if name != "local" {
		src = filepath.Join(b.run, name+"-source")
		if err := os.Mkdir(src, 0o755); err != nil {
			return err
		}
		var err error
		if fix, err = slowfs.Mount(b.data, src, b.cfg.fixture); err != nil {
			return err
		}
		cl.push(fix.Unmount)
	}
	var last slowfs.Counts
	delta := func() *sourceCounts {
		if fix == nil {
			return nil
		}
		c := fix.Counts()
		d := &sourceCounts{Meta: c.Meta - last.Meta, Opens: c.Opens - last.Opens,
			Reads: c.Reads - last.Reads, BytesRead: c.BytesRead - last.BytesRead}
		last = c
		return d
	}

	if err := b.prepareIndex(ctx, name, b.data); err != nil {
		return fmt.Errorf("index: %w", err)
	}
	progress("%s: mount", name)
	t0 := time.Now()
	roots, err := b.stageNodes(ctx, name, src, cl)
	if err != nil {
		return fmt.Errorf("mount: %w", err)
	}
	res.Phases = append(res.Phases, phaseResult{Phase: "mount", Seconds: time.Since(t0).Seconds(), Source: delta()})
	b.logPhase(name, res.Phases[0])
	for _, ph := range phases[1:] {
		s, d, err := b.runPhaseNodes(ctx, ph, roots)
		if err != nil {
			return fmt.Errorf("%s: %w", ph, err)
		}
		pr := phaseResult{Phase: ph, Seconds: d.Seconds(), Items: s.Items, Bytes: s.Bytes,
			Checksum: fmt.Sprintf("%016x", s.Sum), Source: delta()}
		res.Phases = append(res.Phases, pr)
		b.logPhase(name, pr)
		if err := b.check(name, ph, s); err != nil {
			return err
		}
	}
	if fix != nil {
		c := fix.Counts()
		res.Source = &sourceCounts{Meta: c.Meta, Opens: c.Opens, Reads: c.Reads, BytesRead: c.BytesRead, Ops: c.Ops}
	}
	return nil
}

func (b *bench) logPhase(setup string, p phaseResult) {
	msg := fmt.Sprintf("%s: %-6s %8.2fs", setup, p.Phase, p.Seconds)
	if p.Items > 0 {
		msg += fmt.Sprintf("  %d items, %.1f MiB", p.Items, float64(p.Bytes)/(1<<20))
	}
	if s := p.Source; s != nil {
		msg += fmt.Sprintf("  source: %d meta, %d opens, %d reads, %.1f MiB", s.Meta, s.Opens, s.Reads, float64(s.BytesRead)/(1<<20))
	}
	progress("%s", msg)
}

// check compares a phase's checksum with the first setup that ran it.
func (b *bench) check(setup, phase string, s sums) error {
	ref, ok := b.ref[phase]
	if !ok {
		b.ref[phase], b.refSetup[phase] = s, setup
		return nil
	}
	if ref != s {
		return fmt.Errorf("checksum mismatch in setup %s, phase %s: %d items, %d bytes, sum %016x; setup %s read %d items, %d bytes, sum %016x",
			setup, phase, s.Items, s.Bytes, s.Sum, b.refSetup[phase], ref.Items, ref.Bytes, ref.Sum)
	}
	return nil
}

// dropCaches empties the page, dentry and inode caches so the next setup
// starts cold, including on the dataset's own disk.
func (b *bench) dropCaches() {
	syscall.Sync()
	err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
	if err != nil && b.noDrop == nil {
		progress("note: cannot drop the page cache (%v); run as root for cold starts. Setups may read data an earlier setup left in memory.", err)
		b.noDrop = err
	}
}

func buildCachefs(ctx context.Context, dir string) (string, error) {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return "", fmt.Errorf("run from inside the cachefs module (go env GOMOD: %v)", err)
	}
	bin := filepath.Join(dir, "cachefs")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/cachefs")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	progress("building %s", bin)
	return bin, run(cmd)
}

// sourceVersion names the commit the binary was built from, so a figure in
// the history can be traced to the code that made it.
func sourceVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty=+dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// sweep proves nothing is left mounted under the run directory, detaching
// whatever is, and only then removes the directory.
func (b *bench) sweep() error {
	left := mounttable.MountPoints(b.run)
	sort.Sort(sort.Reverse(sort.StringSlice(left))) // nested mounts first
	for _, m := range left {
		unix.Unmount(m, unix.MNT_DETACH)
	}
	if still := mounttable.MountPoints(b.run); len(still) > 0 {
		return fmt.Errorf("still mounted: %v; keeping %s", still, b.run)
	}
	if err := os.RemoveAll(b.run); err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("mounts were left behind and have been detached: %v", left)
	}
	progress("nothing left mounted under %s; removed it", b.run)
	return nil
}
