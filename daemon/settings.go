package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cachefs/cachefs/cachedir"
	"github.com/cachefs/cachefs/mounttable"
	"github.com/cachefs/cachefs/peer"
	"github.com/cachefs/cachefs/prefetch"
	"github.com/dustin/go-humanize"
)

// This file turns settings as a user writes them (the CLI's flags) into a
// Config's typed values. Every error is of kind ErrUsage and is found
// before anything exists.

func usage(format string, args ...any) error { return fail(ErrUsage, fmt.Errorf(format, args...)) }

// CheckWalkers checks the metadata calls a walk keeps in flight.
func CheckWalkers(n int) error {
	if n < 1 || n > 4096 {
		return usage("--walkers %d: want 1 to 4096", n)
	}
	return nil
}

// ParsePassthrough reads auto, on or off.
func ParsePassthrough(s string) (Passthrough, error) {
	switch s {
	case "auto":
		return PassthroughAuto, nil
	case "on", "true":
		return PassthroughOn, nil
	case "off", "false":
		return PassthroughOff, nil
	}
	return 0, usage("--passthrough %q: want auto, on or off", s)
}

// ParseCacheSize reads "50G", "500GiB" or "80%" (of the filesystem that
// will hold the cache directory, measured by the daemon).
func ParseCacheSize(s string) (CacheSize, error) {
	if pct, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		p, err := strconv.ParseFloat(pct, 64)
		if err != nil || p <= 0 || p > 100 {
			return CacheSize{}, usage("--cache-size %q: want a share from 0 to 100%%", s)
		}
		return CacheSize{Percent: p}, nil
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 {
		return CacheSize{}, usage("--cache-size %q: want a size such as 50G or 500GiB, or a share such as 80%%", s)
	}
	return CacheSize{Bytes: int64(n)}, nil
}

// ParseBlockSize reads the unit of fetching and caching.
func ParseBlockSize(s string) (int64, error) {
	bs, err := humanize.ParseBytes(s)
	if err != nil || bs < 4096 || bs > 64<<20 || bs&(bs-1) != 0 {
		return 0, usage("--block-size %q: want a power of two from 4KiB to 64MiB", s)
	}
	return int64(bs), nil
}

// EarlySettings say how early and how widely content is fetched before
// the job asks for it, and how much at once.
type EarlySettings struct {
	Warm                     []string
	Prefetch                 string // off, or a comma list of dir and list
	MaxInFlight, MinInFlight int
	Workers, DirFiles        int
	ListMin                  int // entries a listed directory needs to be prefetched
	DirBytes                 string
	CPUProfile               string
	NoPageCache              bool
}

// Parse checks the settings and returns what the daemon fetches early
// and the prefetcher's bounds. A site that sets only MaxInFlight 8 means
// at most 8: MinInFlight is lowered to it.
func (s EarlySettings) Parse() (prefetch.Options, Early, error) {
	early := Early{Warm: s.Warm, CPUProfile: s.CPUProfile, NoPageCache: s.NoPageCache}
	s.MinInFlight = min(s.MinInFlight, s.MaxInFlight)
	if s.MaxInFlight < 1 || s.MaxInFlight > 4096 || s.MinInFlight < 1 {
		return prefetch.Options{}, early, usage("want 1 <= --min-in-flight (%d) <= --max-in-flight (%d) <= 4096", s.MinInFlight, s.MaxInFlight)
	}
	for _, w := range s.Warm {
		if filepath.IsAbs(w) || slices.Contains(strings.Split(filepath.ToSlash(w), "/"), "..") {
			return prefetch.Options{}, early, usage("--warm %q: want a path relative to SOURCE", w)
		}
	}
	if s.Prefetch != "off" {
		for _, p := range strings.Split(s.Prefetch, ",") {
			switch strings.TrimSpace(p) {
			case "dir":
				early.OnOpen = true
			case "list":
				early.OnList = true
			default:
				return prefetch.Options{}, early, usage("--prefetch %q: want off, or dir, list or dir,list", s.Prefetch)
			}
		}
	}
	if s.ListMin < 0 {
		return prefetch.Options{}, early, usage("--prefetch-list-min %d: want 0 or more entries", s.ListMin)
	}
	pfb, err := humanize.ParseBytes(s.DirBytes)
	if err != nil || pfb == 0 {
		return prefetch.Options{}, early, usage("--prefetch-dir-bytes %q: want a size such as 1GiB", s.DirBytes)
	}
	return prefetch.Options{Workers: s.Workers, MaxInFlight: s.MaxInFlight, MinInFlight: s.MinInFlight,
		PerDir: s.DirFiles, DirBytes: int64(pfb), ListMinEntries: s.ListMin}, early, nil
}

// Check says whether the index settings go together.
func (o IndexConfig) Check() error {
	if o.Path != "" && o.Reuse {
		return usage("--index and --reuse-index exclude each other: --index names the index to load")
	}
	if o.Path != "" && o.SavePath != "" {
		return usage("--save-index writes the index of a walk, and --index skips the walk; to copy an index, copy the file")
	}
	return nil
}

// PeerSettings are the peer flags as given, and what the environment says
// of this node.
type PeerSettings struct {
	List       string // host:port list, a SLURM hostlist, or "slurm"
	Listen     string
	SecretFile string // absolute
	Timeout    time.Duration
	// NodeList is $SLURM_JOB_NODELIST, NodeName $SLURMD_NODENAME, Host
	// the host name: how this node is found among the job's.
	NodeList, NodeName, Host string
}

// Config checks the settings and finds this node among the job's; nil
// without a list. The daemon loads the secret and binds Listen.
func (s PeerSettings) Config(ctx context.Context) (*PeerConfig, error) {
	if s.List == "" {
		if s.Listen != "" || s.SecretFile != "" {
			return nil, usage("--listen and --peer-secret-file need --peers")
		}
		return nil, nil
	}
	if s.Listen == "" || s.SecretFile == "" {
		return nil, usage("--peers needs --listen and --peer-secret-file")
	}
	_, port, err := net.SplitHostPort(s.Listen)
	if err != nil {
		return nil, usage("--listen %q: want host:port", s.Listen)
	}
	list := s.List
	if list == "slurm" {
		if list = s.NodeList; list == "" {
			return nil, fail(ErrUsage, errors.New("--peers slurm: SLURM_JOB_NODELIST is not set"))
		}
	}
	peers, err := peer.ExpandList(ctx, list, port, 10*time.Second)
	if err != nil {
		return nil, fail(ErrUsage, err)
	}
	self, err := peer.FindSelf(peers, s.Listen, s.NodeName, s.Host)
	if err != nil {
		return nil, fail(ErrUsage, err)
	}
	return &PeerConfig{Self: self, Peers: peers, Listen: s.Listen, SecretFile: s.SecretFile, Timeout: s.Timeout}, nil
}

// Settings are one mount's settings as a user gives them; Config checks
// and types them.
type Settings struct {
	Source, Mountpoint string
	// CacheDir and LogFile are "" for the defaults: a directory of the
	// user's under TmpDir ($TMPDIR), and the log in the cache directory.
	CacheDir, LogFile, TmpDir       string
	Walkers, ReadAhead              int
	AllowOther, DebugFuse, Writable bool
	CacheSize, BlockSize            string
	Passthrough                     string
	Early                           EarlySettings
	Index                           IndexConfig
	Peers                           PeerSettings
}

// Config checks every setting and resolves the paths, creating nothing:
// a usage error is found before anything exists. Logger, Runtime, Metrics
// and the hooks are the caller's to set.
func (s Settings) Config(ctx context.Context) (Config, error) {
	c := Config{Walkers: s.Walkers, AllowOther: s.AllowOther, DebugFuse: s.DebugFuse, ReadAhead: s.ReadAhead,
		Writable: s.Writable, Index: s.Index}
	var err error
	if err := CheckWalkers(s.Walkers); err != nil {
		return c, err
	}
	if c.Passthrough, err = ParsePassthrough(s.Passthrough); err != nil {
		return c, err
	}
	if c.Prefetch, c.Early, err = s.Early.Parse(); err != nil {
		return c, err
	}
	if s.Writable {
		if err := CheckWritable(); err != nil {
			return c, err
		}
	}
	if c.Cache, err = ParseCacheSize(s.CacheSize); err != nil {
		return c, err
	}
	if c.BlockSize, err = ParseBlockSize(s.BlockSize); err != nil {
		return c, err
	}
	if err := s.Index.Check(); err != nil {
		return c, err
	}
	if c.Peers, err = s.Peers.Config(ctx); err != nil {
		return c, err
	}
	return c, s.paths(ctx, &c)
}

// paths resolves every path, so that everything after this knows each by
// its real name: the kernel mounts at a link's target, mountinfo and the
// runtime record name that, and only real paths can be compared for
// containment. A cache directory or log file that is itself a symlink is
// refused when opened, not followed: it may be a link another user planted.
func (s Settings) paths(ctx context.Context, c *Config) error {
	c.Source, c.Mountpoint = s.Source, s.Mountpoint
	switch err := mounttable.ResolveAll(ctx, &c.Source, &c.Mountpoint); {
	case errors.Is(err, mounttable.ErrInterrupted):
		return fail(ErrInterrupted, errors.New("interrupted while resolving paths; nothing mounted"))
	case err != nil:
		return fail(ErrUsage, err)
	}
	if err := linksOurs(s.Mountpoint); err != nil {
		return fail(ErrMountpoint, err)
	}
	var err error
	for _, p := range []struct{ in, out *string }{{&s.CacheDir, &c.CacheDir}, {&s.LogFile, &c.LogFile}} {
		if *p.in != "" {
			if *p.out, err = mounttable.ResolveParent(*p.in); err != nil {
				return fail(ErrUsage, err)
			}
		}
	}
	if c.CacheDir == "" {
		if c.CacheUnder, c.CacheDir, err = DefaultCacheDir(s.TmpDir, c.Source); err != nil {
			return fail(ErrCacheDir, fmt.Errorf("cache dir: %w", err))
		}
	}
	if c.LogFile == "" {
		c.LogFile = cachedir.Layout(c.CacheDir).Log()
	}
	return nil
}

// Age is a duration as a user gives an index's age: Go's durations plus
// days ("7d", "1.5d"). It is a flag value (Set, String, Type).
type Age time.Duration

func (a Age) String() string {
	if a == 0 {
		return "0"
	}
	return time.Duration(a).String()
}

func (a *Age) Set(s string) error {
	s = strings.TrimSpace(s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		f, err := strconv.ParseFloat(days, 64)
		if err != nil || f < 0 || f > 1e5 {
			return fmt.Errorf("want a duration such as 90m, 12h or 7d")
		}
		d = time.Duration(f * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 90m, 12h or 7d")
		}
	}
	*a = Age(d)
	return nil
}

func (a Age) Type() string { return "duration" }
