package main

import (
	"context"
	"io"
	"os"
	"path/filepath"

	"github.com/cachefs/cachefs/daemon"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// mountOptions are the mount command's flags as given. parse turns them
// into a daemon.Config; the launcher forwards the flags the user set to the
// daemon as they are (forwardedFlags), so no flag is listed twice.
type mountOptions struct {
	s                 daemon.Settings
	foreground, json  bool
	readyFd           int
	cacheDir, logFile pathFlag
	index             indexOptions
	early             earlyOptions
	metrics           metricsOptions
	peers             peerOptions
}

func (o *mountOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&o.s.Walkers, "walkers", 64, "metadata calls kept in flight while walking the source")
	f.BoolVar(&o.foreground, "foreground", false, "stay attached: serve until unmounted or interrupted")
	f.BoolVar(&o.s.AllowOther, "allow-other", false, "let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root); the walk then records POSIX ACLs for the kernel to enforce")
	f.Var(&o.cacheDir, "cache-dir", "node-local directory for the cache and the daemon log (default: $TMPDIR/cachefs-UID/NAME-HASH)")
	f.Var(&o.logFile, "log-file", "daemon log file (default: CACHE-DIR/cachefs.log)")
	f.StringVar(&o.s.CacheSize, "cache-size", "50%", "most bytes the cache keeps on disk: a size (50G, 500GiB) or a share of the cache filesystem (80%)")
	f.StringVar(&o.s.BlockSize, "block-size", "1MiB", "unit in which contents are fetched and cached")
	f.IntVar(&o.s.ReadAhead, "read-ahead", 4, "blocks fetched ahead of a sequential reader (0 turns it off)")
	// No default for a bare --passthrough: with one, pflag would take the
	// "off" of "--passthrough off" for a positional argument.
	f.StringVar(&o.s.Passthrough, "passthrough", "auto", "auto, on or off: on, every open is a round trip to the daemon, which hands fully cached files to the kernel to read directly (Linux 6.9+, root); off, the kernel opens files itself with no round trip and re-reads come from the page cache; auto picks on when files average 4 MiB or more")
	f.BoolVar(&o.s.Writable, "writable", false, "accept writes: changes land in the cache directory, never in SOURCE, until 'cachefs push'")
	f.BoolVar(&o.json, "json", false, "once the mount serves, print one JSON object on stdout (pid, paths, snapshot size and time; \"schema\": 1, see docs/operations.md) and the summary line on stderr")
	f.BoolVar(&o.s.DebugFuse, "debug-fuse", false, "log every FUSE request (very verbose)")
	f.IntVar(&o.readyFd, "ready-fd", 0, "internal: report progress and readiness on this descriptor")
	if err := f.MarkHidden("ready-fd"); err != nil {
		panic(err)
	}
	o.index.AddFlags(f)
	o.early.AddFlags(f)
	o.metrics.AddFlags(f)
	o.peers.AddFlags(f)
}

func newMountCommand(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount SOURCE MOUNTPOINT",
		Short: "Snapshot SOURCE's metadata and serve it at MOUNTPOINT",
		Long:  help("mount", "\n"+exitStatusHelp),
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, o, cmd.Flags(), args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// parse checks every flag and argument and resolves the paths, creating
// nothing: a usage error is found before anything exists.
func (o *mountOptions) parse(ctx context.Context, g *globalOptions, args []string) (daemon.Config, error) {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return daemon.Config{}, err
	}
	metrics, err := o.metrics.config()
	if err != nil {
		return daemon.Config{}, err
	}
	s := o.s
	s.Source, s.Mountpoint, s.CacheDir, s.LogFile, s.TmpDir = args[0], args[1], string(o.cacheDir), string(o.logFile), os.Getenv("TMPDIR")
	s.Early, s.Peers, s.Index = o.early.EarlySettings, o.peers.settings(), o.index.config()
	c, err := s.Config(ctx)
	c.Logger, c.Metrics, c.Runtime = log, metrics, runtimeDir()
	return c, err
}

func runMount(ctx context.Context, g *globalOptions, o *mountOptions, flags *pflag.FlagSet, args []string) error {
	c, err := o.parse(ctx, g, args)
	if err != nil {
		return err
	}
	term := newTermReporter()
	term.json = o.json
	if o.readyFd <= 0 && !o.foreground {
		return launch(ctx, c, forwardedFlags(flags), 0, term)
	}
	signals.Serving(c.Logger, nil)
	c.Serving = signals.Serving
	if o.readyFd <= 0 {
		return daemon.Run(ctx, c, term)
	}
	c.LogTo = func(w io.Writer) zerolog.Logger {
		log, _ := g.logger(w) // the level and format were checked by parse
		return log
	}
	rep := daemon.NewPipeReporter(os.NewFile(uintptr(o.readyFd), "ready"))
	err = daemon.Run(ctx, c, rep)
	rep.Fail(err)
	return err
}

// forwardedFlags are the flags the user set, for the daemon's command line,
// with paths made absolute: the daemon runs in "/".
func forwardedFlags(flags *pflag.FlagSet) []string {
	var out []string
	flags.Visit(func(f *pflag.Flag) {
		if f.Name == "foreground" || f.Name == "ready-fd" || f.Annotations[launcherOnly] != nil {
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			// A repeatable flag goes once per value: its String is
			// a bracketed list no flag parses back.
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+f.Name+"="+v)
			}
			return
		}
		v := f.Value.String()
		if p, ok := f.Value.(*pathFlag); ok {
			v = p.abs()
		}
		out = append(out, "--"+f.Name+"="+v)
	})
	return out
}

// launcherOnly annotates a flag of a command that wraps the mount (run)
// that the daemon does not take.
const launcherOnly = "cachefs-launcher-only"

// pathFlag is a flag naming a file or directory.
type pathFlag string

func (p *pathFlag) Set(s string) error { *p = pathFlag(s); return nil }
func (p *pathFlag) String() string     { return string(*p) }
func (p *pathFlag) Type() string       { return "path" }

func (p *pathFlag) abs() string {
	if a, err := filepath.Abs(string(*p)); err == nil {
		return a
	}
	return string(*p)
}
