package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	cfs "github.com/cachefs/cachefs/fs"
	"github.com/cachefs/cachefs/privdir"
	"github.com/cachefs/cachefs/snapshot"
	"github.com/dustin/go-humanize"
	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type mountOptions struct {
	walkers    int
	foreground bool
	allowOther bool
	cacheDir   string
	cacheUnder string // the shared parent of a default cache dir; "" for --cache-dir
	logFile    string
	debugFuse  bool
	readyFd    int
	cacheSize  string
	blockSize  string
	readAhead  int
	passthru   string
	index      indexOptions
	prefetch   string
	pfWorkers  int
	pfFiles    int
	pfBytes    string
	pfDirBytes int64 // pfBytes, parsed
	early      earlyOptions
}

func (o *mountOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.IntVar(&o.walkers, "walkers", 64, "metadata calls kept in flight while walking the source")
	f.BoolVar(&o.foreground, "foreground", false, "stay attached: serve until unmounted or interrupted")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users access the mount (needs user_allow_other in /etc/fuse.conf unless root); the walk then records POSIX ACLs for the kernel to enforce")
	f.StringVar(&o.cacheDir, "cache-dir", "", "node-local directory for the cache and the daemon log (default: $TMPDIR/cachefs-UID/NAME-HASH)")
	f.StringVar(&o.logFile, "log-file", "", "daemon log file (default: CACHE-DIR/cachefs.log)")
	f.StringVar(&o.cacheSize, "cache-size", "50%", "most bytes the cache keeps on disk: a size (50G, 500GiB) or a share of the cache filesystem (80%)")
	f.StringVar(&o.blockSize, "block-size", "1MiB", "unit in which contents are fetched and cached")
	f.IntVar(&o.readAhead, "read-ahead", 4, "blocks fetched ahead of a sequential reader (0 turns it off)")
	// No default for a bare --passthrough: with one, pflag would take the
	// "off" of "--passthrough off" for a positional argument.
	f.StringVar(&o.passthru, "passthrough", "auto", "auto, on or off: on, every open is a round trip to the daemon, which hands fully cached files to the kernel to read directly (Linux 6.9+, root); off, the kernel opens files itself with no round trip and re-reads come from the page cache; auto picks on when files average 4 MiB or more")
	f.StringVar(&o.prefetch, "prefetch", "dir,list", "fetch ahead in the background: dir (on open, the directory's other files), list (on listing, the directory's small files), both (dir,list) or off")
	f.IntVar(&o.pfWorkers, "prefetch-workers", 0, "files prefetched at once, fixed (0: as many as pay, up to --max-in-flight)")
	f.IntVar(&o.pfFiles, "prefetch-dir-files", 256, "most files queued per directory at a time")
	f.StringVar(&o.pfBytes, "prefetch-dir-bytes", "1GiB", "most bytes queued per directory at a time")
	f.BoolVar(&o.debugFuse, "debug-fuse", false, "log every FUSE request (very verbose)")
	f.IntVar(&o.readyFd, "ready-fd", 0, "internal: report progress and readiness on this descriptor")
	_ = f.MarkHidden("ready-fd")
	o.index.AddFlags(f)
	o.early.AddFlags(f)
}

func newMountCommand(g *globalOptions) *cobra.Command {
	o := &mountOptions{}
	cmd := &cobra.Command{
		Use:   "mount SOURCE MOUNTPOINT",
		Short: "Snapshot SOURCE's metadata and serve it at MOUNTPOINT",
		Long: `Walk SOURCE once, in parallel, and mount a read-only view of it at MOUNTPOINT.
The command returns once the mount is serving, leaving a daemon in the
background (--foreground keeps it attached). After that, metadata is served
from memory: the source sees no stat, lookup, readdir or readlink again.

MOUNTPOINT is created if missing and must be empty. A mount left behind by a
killed daemon is cleaned first. Symlinks in SOURCE and MOUNTPOINT are
resolved first: the mount is made, reported and found at the real path.

With --allow-other the walk also records POSIX ACLs (one more metadata call
per entry) and the kernel enforces them for every user. A mount without it
is reachable by its own user only, whom the source refuses whatever an ACL
refuses when the daemon opens a file, so it skips them. For the same reason
--allow-other refuses an --index made without ACLs (exit status 11).

The default cache directory, under the shared $TMPDIR, is used only if it
is yours, mode 0700 and not a symlink; anything else there fails with
exit status 9.` + "\n" + exitStatusHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), g, o, args)
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// daemonMsg is one line on the readiness pipe from daemon to launcher.
type daemonMsg struct {
	Progress *progressMsg `json:"progress,omitempty"`
	Ready    *readyMsg    `json:"ready,omitempty"`
	Error    string       `json:"error,omitempty"`
	Code     int          `json:"code,omitempty"`
}

type progressMsg struct {
	Entries, Dirs, Bytes, Errors int64
}

type readyMsg struct {
	Source, Mountpoint, CacheDir, LogFile string
	Stats                                 snapshot.Stats
	Seconds                               float64
	Pid                                   int
}

func (r *readyMsg) summary() string {
	s := r.Stats
	return fmt.Sprintf("cachefs: serving %s at %s: %s entries (%s dirs, %s files, %s) snapshotted in %.2fs, %d unreadable; cache %s; log %s; daemon pid %d",
		r.Source, r.Mountpoint, humanize.Comma(s.Entries), humanize.Comma(s.Dirs), humanize.Comma(s.Files),
		humanize.IBytes(uint64(s.Bytes)), r.Seconds, s.Errors, r.CacheDir, r.LogFile, r.Pid)
}

func runMount(ctx context.Context, g *globalOptions, o *mountOptions, args []string) error {
	if _, err := g.logger(os.Stderr); err != nil {
		return err
	}
	if o.walkers < 1 || o.walkers > 4096 {
		return usageError(fmt.Errorf("--walkers %d: want 1 to 4096", o.walkers))
	}
	switch o.passthru {
	case "true":
		o.passthru = "on"
	case "false":
		o.passthru = "off"
	case "auto", "on", "off":
	default:
		return usageError(fmt.Errorf("--passthrough %q: want auto, on or off", o.passthru))
	}
	if err := o.early.check(o.prefetch); err != nil {
		return usageError(err)
	}
	pfb, err := humanize.ParseBytes(o.pfBytes)
	if err != nil || pfb == 0 {
		return usageError(fmt.Errorf("--prefetch-dir-bytes %q: want a size such as 1GiB", o.pfBytes))
	}
	o.pfDirBytes = int64(pfb)
	// Everything after this knows each path by its real name: the kernel
	// mounts at the link's target, mountinfo and the runtime record name
	// that, and only real paths can be compared for containment.
	src, mnt := args[0], args[1]
	if err := resolveAll(ctx, &src, &mnt); err != nil {
		return err
	}
	// A cache directory or log file that is itself a symlink is refused
	// when opened, not followed: it may be a link another user planted.
	for _, p := range []*string{&o.cacheDir, &o.logFile} {
		if *p != "" {
			if *p, err = resolveParent(*p); err != nil {
				return usageError(err)
			}
		}
	}
	if o.readyFd > 0 {
		pipe := os.NewFile(uintptr(o.readyFd), "ready")
		rep := &pipeReporter{enc: json.NewEncoder(pipe)}
		err := serve(ctx, g, o, src, mnt, rep)
		if err != nil && !rep.sent {
			rep.send(daemonMsg{Error: err.Error(), Code: exitCode(err)})
		}
		return err
	}
	if o.foreground {
		return serve(ctx, g, o, src, mnt, newTermReporter())
	}
	return launch(ctx, g, o, src, mnt)
}

// launch starts the daemon in a new session and relays its progress until
// the mount serves or the daemon fails.
func launch(ctx context.Context, g *globalOptions, o *mountOptions, src, mnt string) error {
	exe, err := os.Executable()
	if err != nil {
		return withCode(exitInternal, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return withCode(exitInternal, err)
	}
	defer r.Close()
	args := []string{"mount", src, mnt, "--foreground", "--ready-fd=3",
		"--walkers=" + strconv.Itoa(o.walkers),
		"--log-level=" + g.logLevel, "--log-format=" + g.logFormat,
		"--allow-other=" + strconv.FormatBool(o.allowOther),
		"--debug-fuse=" + strconv.FormatBool(o.debugFuse),
		"--cache-size=" + o.cacheSize, "--block-size=" + o.blockSize,
		"--read-ahead=" + strconv.Itoa(o.readAhead),
		"--passthrough=" + o.passthru,
		"--prefetch=" + o.prefetch, "--prefetch-workers=" + strconv.Itoa(o.pfWorkers),
		"--prefetch-dir-files=" + strconv.Itoa(o.pfFiles), "--prefetch-dir-bytes=" + o.pfBytes}
	args = append(args, o.index.args()...)
	args = append(args, o.early.args()...)
	if o.cacheDir != "" {
		args = append(args, "--cache-dir="+o.cacheDir)
	}
	if o.logFile != "" {
		args = append(args, "--log-file="+o.logFile)
	}
	cmd := exec.Command(exe, args...)
	// Its own session, so the job's terminal and process group signals do
	// not reach it; cwd "/" so it pins no directory.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w}
	mountsBefore, _ := mountsAt(mnt)
	if err := cmd.Start(); err != nil {
		w.Close()
		return withCode(exitInternal, fmt.Errorf("starting the daemon: %w", err))
	}
	w.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	msgs := make(chan daemonMsg)
	go func() {
		defer close(msgs)
		dec := json.NewDecoder(bufio.NewReader(r))
		for {
			var m daemonMsg
			if dec.Decode(&m) != nil {
				return
			}
			msgs <- m
		}
	}()
	term := newTermReporter()
	for {
		select {
		case <-ctx.Done():
			term.clear()
			return abortLaunch(cmd.Process, exited, mnt, mountsBefore)
		case m, ok := <-msgs:
			switch {
			case !ok:
				term.clear()
				_, werr := waitExit(exited, killWait)
				return withCode(exitMountFailed, fmt.Errorf("the daemon exited before the mount was ready (%v); see its log in the cache directory", werr))
			case m.Progress != nil:
				term.progress(*m.Progress)
			case m.Ready != nil:
				term.clear()
				fmt.Println(m.Ready.summary())
				return nil
			case m.Error != "":
				term.clear()
				// The daemon exits after it reports; a thread stuck in the
				// kernel can delay that, but not the answer.
				waitExit(exited, killWait)
				return withCode(m.Code, errors.New(m.Error))
			}
		}
	}
}

// stopGrace is how long an interrupted launch lets the daemon stop on
// SIGTERM; killWait, how long it then waits for SIGKILL to take. A daemon
// stuck in a call to a hung source never sees SIGTERM (and would retry the
// call if it did), so Ctrl-C must not depend on it. Killing is safe: the
// cache on disk is consistent at every instruction.
const (
	stopGrace = 500 * time.Millisecond
	killWait  = 2 * time.Second
)

// abortLaunch stops the daemon of an interrupted launch, by force if it
// does not stop at once, and detaches a mount it made on the way.
func abortLaunch(p *os.Process, exited <-chan error, mnt string, mountsBefore int) error {
	_ = p.Signal(syscall.SIGTERM)
	stopped, _ := waitExit(exited, stopGrace)
	if !stopped {
		_ = p.Kill()
		stopped, _ = waitExit(exited, killWait)
	}
	if n, err := mountsAt(mnt); err == nil && n > mountsBefore {
		if me, _, _ := findMount(mnt); me.FSType == fsType {
			if err := detach(mnt, true); err != nil {
				return withCode(exitInterrupted, fmt.Errorf("interrupted; the mount at %s could not be detached: %w", mnt, err))
			}
		}
	}
	if rec, _ := readRecord(mnt); rec != nil && rec.Pid == p.Pid {
		_ = os.Remove(recordPath(mnt))
	}
	if !stopped {
		return withCode(exitInterrupted, fmt.Errorf("interrupted; nothing mounted; %s and has not exited yet", whyNoAnswer(p.Pid)))
	}
	return withCode(exitInterrupted, errors.New("interrupted; nothing mounted"))
}

// waitExit waits at most d for the daemon to exit, and returns whether it
// did and its exit status.
func waitExit(exited <-chan error, d time.Duration) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-exited:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// reporter receives walk progress and the final readiness.
type reporter interface {
	progress(progressMsg)
	ready(*readyMsg)
}

type pipeReporter struct {
	enc  *json.Encoder
	sent bool
}

func (p *pipeReporter) send(m daemonMsg) { _ = p.enc.Encode(m) }

func (p *pipeReporter) progress(m progressMsg) { p.send(daemonMsg{Progress: &m}) }

func (p *pipeReporter) ready(m *readyMsg) {
	p.send(daemonMsg{Ready: m})
	p.sent = true
}

// termReporter draws a one-line progress counter when stderr is a terminal
// and stays silent otherwise, so batch logs get only the summary.
type termReporter struct {
	tty   bool
	drawn bool
}

func newTermReporter() *termReporter {
	return &termReporter{tty: isatty.IsTerminal(os.Stderr.Fd())}
}

func (t *termReporter) progress(m progressMsg) {
	if !t.tty {
		return
	}
	fmt.Fprintf(os.Stderr, "\r\033[Kwalking source: %s entries, %s dirs, %s, %d unreadable",
		humanize.Comma(m.Entries), humanize.Comma(m.Dirs), humanize.IBytes(uint64(m.Bytes)), m.Errors)
	t.drawn = true
}

func (t *termReporter) clear() {
	if t.drawn {
		fmt.Fprint(os.Stderr, "\r\033[K")
		t.drawn = false
	}
}

func (t *termReporter) ready(m *readyMsg) {
	t.clear()
	fmt.Println(m.summary())
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// defaultCacheDir derives a per-user, per-source directory on node-local
// storage, so two jobs on one node over different sources never share one.
// It returns the shared parent ($TMPDIR, else /tmp), where other users may
// create names too, and the private directories to make below it.
func defaultCacheDir(src string) (parent string, names []string) {
	parent = os.Getenv("TMPDIR")
	if parent == "" {
		parent = "/tmp"
	}
	h := sha256.Sum256([]byte(src))
	name := unsafeName.ReplaceAllString(filepath.Base(src), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	return parent, []string{fmt.Sprintf("cachefs-%d", os.Geteuid()), name + "-" + hex.EncodeToString(h[:6])}
}

// makeDaemonDirs makes the directories the daemon writes in before anything
// is mounted, so a planted one fails the mount with exit 9. The cache holds
// copies of files other users may not read, and the control socket lives in
// it; the runtime directory holds the record unmount trusts.
func makeDaemonDirs(o *mountOptions) error {
	if err := makeCacheDir(o); err != nil {
		return err
	}
	if _, err := makeRuntimeDir(); err != nil {
		return withCode(exitCacheDir, fmt.Errorf("runtime dir: %w%s", err, hint(err, "; remove it", "")))
	}
	return nil
}

// hint is the advice appended to a refusal from privdir: mine for a
// directory cachefs makes, which its owner can remove, shared for the
// parent or above, which are not cachefs's.
func hint(err error, mine, shared string) string {
	var pe *privdir.Error
	switch {
	case !errors.As(err, &pe):
		return ""
	case pe.Shared:
		return shared
	}
	return mine
}

// makeCacheDir creates or adopts the cache directory: a default one by
// privdir's rule for directories under a shared parent, one the user named
// by the rule for explicit directories.
func makeCacheDir(o *mountOptions) error {
	if o.cacheUnder == "" {
		if err := privdir.Adopt(o.cacheDir); err != nil {
			return withCode(exitCacheDir, fmt.Errorf("cache dir: %w%s", err, hint(err, "; pass a --cache-dir of your own", "")))
		}
		return nil
	}
	rel, _ := filepath.Rel(o.cacheUnder, o.cacheDir)
	if _, err := privdir.Make(o.cacheUnder, strings.Split(rel, "/")...); err != nil {
		return withCode(exitCacheDir, fmt.Errorf("cache dir: %w%s", err, hint(err, "; remove it or pass --cache-dir", "; pass --cache-dir")))
	}
	return nil
}

// within reports whether path is dir or below it. Both must be resolved
// (resolvePath): a symlink would hide that one is inside the other.
func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// prepare checks the source and mountpoint and creates what is missing, so
// that every bad input fails before anything is walked or mounted.
//
// It returns the source root's stat, the one getattr of the source that a
// mount from an index makes, so nothing later needs to stat it again.
func prepare(log zerolog.Logger, o *mountOptions, src, mnt string) (st unix.Stat_t, err error) {
	if err := retryEINTR(func() error { return unix.Stat(src, &st) }); err != nil {
		switch {
		case errors.Is(err, unix.ENOENT):
			return st, withCode(exitSource, fmt.Errorf("source %s does not exist", src))
		default:
			return st, withCode(exitSource, fmt.Errorf("source %s: %w", src, err))
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return st, withCode(exitSource, fmt.Errorf("source %s is not a directory", src))
	}
	if err := retryEINTR(func() error { return unix.Access(src, unix.R_OK|unix.X_OK) }); err != nil {
		return st, withCode(exitSource, fmt.Errorf("source %s is not readable: %w", src, err))
	}
	if within(src, mnt) {
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s would hide the source %s", mnt, src))
	}
	if within(mnt, src) {
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s is inside the source %s: the mount would hide part of the source", mnt, src))
	}
	if within(o.cacheDir, mnt) || within(o.logFile, mnt) {
		return st, withCode(exitCacheDir, fmt.Errorf("cache directory %s is inside the mountpoint %s", o.cacheDir, mnt))
	}

	if isStale(mnt) {
		if err := detach(mnt, true); err != nil {
			return st, withCode(exitMounted, fmt.Errorf("mountpoint %s holds a dead mount that could not be cleaned: %w", mnt, err))
		}
		log.Warn().Str("mountpoint", mnt).Msg("cleaned a mount left behind by a daemon that died")
	}
	if me, ok, err := findMount(mnt); err != nil {
		return st, withCode(exitInternal, err)
	} else if ok {
		return st, withCode(exitMounted, fmt.Errorf("mountpoint %s is already mounted (%s from %s)", mnt, me.FSType, me.Source))
	}
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s: %w", mnt, err))
	}
	f, err := os.Open(mnt)
	if err != nil {
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s: %w", mnt, err))
	}
	names, err := f.Readdirnames(1)
	f.Close()
	switch {
	case len(names) > 0:
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s is not empty", mnt))
	case errors.Is(err, unix.ENOTDIR):
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s is not a directory", mnt))
	case err != nil && !errors.Is(err, io.EOF):
		return st, withCode(exitMountpoint, fmt.Errorf("mountpoint %s: %w", mnt, err))
	}

	return st, makeDaemonDirs(o)
}

// serve walks, mounts, reports readiness, and serves until unmounted or
// signalled.
func serve(ctx context.Context, g *globalOptions, o *mountOptions, src, mnt string, rep reporter) error {
	if o.cacheDir == "" {
		parent, names := defaultCacheDir(src)
		var err error
		if o.cacheUnder, err = resolvePath(parent); err != nil {
			return withCode(exitCacheDir, fmt.Errorf("cache dir: %w", err))
		}
		o.cacheDir = filepath.Join(append([]string{o.cacheUnder}, names...)...)
	}
	if o.logFile == "" {
		o.logFile = filepath.Join(o.cacheDir, "cachefs.log")
	}
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	signals.serving(log, nil)
	rootSt, err := prepare(log, o, src, mnt)
	if err != nil {
		return err
	}
	if o.readyFd > 0 {
		lf, err := privdir.OpenAppend(o.logFile)
		if err != nil {
			return withCode(exitCacheDir, fmt.Errorf("log file: %w", err))
		}
		// Panics and anything else written to stderr land in the log too.
		_ = unix.Dup2(int(lf.Fd()), 2)
		if log, err = g.logger(lf); err != nil {
			return err
		}
	}
	log = log.With().Str("mountpoint", mnt).Logger()

	cache, err := openCache(log, o, src, mnt, rootSt.Dev)
	if err != nil {
		return err
	}
	defer cache.Close()

	log.Info().Str("source", src).Int("pid", os.Getpid()).Msg("taking the snapshot")

	start := time.Now()
	prog := &snapshot.Progress{}
	stopProgress := showProgress(prog, rep.progress)
	wo := snapshot.WalkOptions{Walkers: o.walkers, Progress: prog, Logger: log, ACLs: o.allowOther}
	snap, err := o.index.snapshot(ctx, log, src, o.cacheDir, &rootSt, o.allowOther, wo)
	stopProgress()
	if err != nil {
		if ctx.Err() != nil {
			return withCode(exitInterrupted, errors.New("interrupted while walking the source; nothing mounted"))
		}
		return withCode(exitSource, err)
	}
	walkSecs := time.Since(start).Seconds()

	content := cacheContent{snap: snap, cache: cache}
	defer o.early.startCPUProfile(log)()
	pf, onOpen, onList, err := startPrefetch(log, o, snap, prefetchWarmer{content}, o.blockBytes())
	if err != nil {
		return usageError(err)
	}
	if pf != nil {
		defer pf.Close()
	}
	fsLog := log.With().Str("component", "fuse").Logger()
	m, err := cfs.New(mnt, cfs.Config{
		Snapshot:    snap,
		Content:     content,
		OnOpen:      onOpen,
		OnList:      onList,
		FsName:      src,
		AllowOther:  o.allowOther,
		Logger:      fsLog,
		Debug:       o.debugFuse,
		GoFuseLog:   stdlog.New(fsLog, "", 0),
		Passthrough: o.passthru != "off",
	})
	if err != nil {
		return withCode(exitMountFailed, err)
	}
	ptOK, why := m.PassthroughAvailable()
	ptOK, why = choosePassthrough(o.passthru, ptOK, why, snap.Stats())
	if !ptOK {
		m.KernelOpens()
	}
	log.Info().Bool("passthrough", ptOK).Msg(why)
	started := time.Now()
	state := &daemonState{src: src, mnt: mnt, cacheDir: o.cacheDir, logFile: o.logFile, started: started,
		snap: snap, m: m, cache: cache, content: content, pf: pf, passthrough: ptOK, openMode: why, log: log}
	signals.serving(log, func() string { return figuresLine(ptr(state.status())) })
	stopControl, err := serveControl(state)
	if err != nil {
		log.Warn().Err(err).Msg("no control socket: status and warm will not reach this mount")
		stopControl = func() {}
	}
	defer stopControl()
	rec := &record{Pid: os.Getpid(), Source: src, Mountpoint: mnt, CacheDir: o.cacheDir, LogFile: o.logFile, Started: started}
	if err := writeRecord(rec); err != nil {
		log.Warn().Err(err).Msg("cannot write the runtime record; unmount will not wait for this daemon")
	}
	st := snap.Stats()
	log.Info().Int64("entries", st.Entries).Int64("bytes", st.Bytes).Int64("unreadable", st.Errors).
		Float64("seconds", walkSecs).Msg("serving")
	rep.ready(&readyMsg{Source: src, Mountpoint: mnt, CacheDir: o.cacheDir, LogFile: o.logFile,
		Stats: st, Seconds: walkSecs, Pid: os.Getpid()})

	served := make(chan struct{})
	go func() {
		select {
		case <-served:
		case <-ctx.Done():
			log.Info().Msg("signal received: unmounting")
			if err := m.Unmount(); err != nil {
				// Files are still open; detach so the job's next steps see
				// no mount, and finish when the last file closes.
				log.Warn().Err(err).Msg("unmount failed, detaching lazily")
				if err := detach(mnt, true); err != nil {
					log.Error().Err(err).Msg("lazy unmount failed")
				}
			}
		}
	}()
	m.Wait()
	close(served)

	rec.Exited = true
	rec.Final = ptr(state.status())
	log.Info().Msg(figuresLine(rec.Final))
	if err := writeRecord(rec); err != nil {
		log.Warn().Err(err).Msg("cannot write the final figures")
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

// showProgress reports prog's counters every 200 ms until the returned
// stop is called; stop returns only after the last report, so nothing the
// caller writes next (the readiness message, say) can interleave with it.
func showProgress(prog *snapshot.Progress, report func(progressMsg)) (stop func()) {
	tick := time.NewTicker(200 * time.Millisecond)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				report(progressMsg{prog.Entries.Load(), prog.Dirs.Load(), prog.Bytes.Load(), prog.Errors.Load()})
			}
		}
	}()
	return func() {
		tick.Stop()
		close(done)
		<-stopped
	}
}

// retryEINTR repeats a call that a signal interrupted: on network and FUSE
// sources, slow calls are interruptible and the Go runtime signals often.
func retryEINTR(call func() error) error {
	for {
		if err := call(); err != unix.EINTR {
			return err
		}
	}
}

// passthroughMinMean is the average file size from which auto mode opens
// files through the daemon for passthrough. Every open then costs an OPEN
// and a RELEASE round trip, about 55 us of wall time with four readers on
// two cores (BenchmarkWarmReopen), all of it lost when the file is re-read
// from the page cache; what it buys is reads of cache files from disk at
// local-disk speed, 3-15% faster than splicing them (BenchmarkLargeCachedRead,
// best rounds), and one copy of the pages in memory instead of two. At
// 4 MiB the round trip is about 6% of a warm read and a fraction of what
// passthrough saves on a cold one; for the small files of a dataloader's
// epoch it is most of the cost.
const passthroughMinMean = 4 << 20

// choosePassthrough decides, once per mount, whether opens go to the
// daemon (so fully cached files can be passed through) or the kernel opens
// files itself. It returns the decision and the reason to log and report.
func choosePassthrough(flag string, available bool, why string, st snapshot.Stats) (bool, string) {
	const kernel = "; the kernel opens files itself (no round trip per open) and cached ranges are spliced"
	switch {
	case flag == "off":
		return false, "passthrough off (--passthrough=off)" + kernel
	case !available:
		return false, "passthrough unavailable: " + why + kernel
	case flag == "on":
		return true, "passthrough on: " + why
	}
	mean := int64(0)
	if st.Files > 0 {
		mean = st.Bytes / st.Files
	}
	if mean < passthroughMinMean {
		return false, fmt.Sprintf("passthrough off: files average %s, under %s, so a round trip per open would cost more than passthrough gains", humanize.IBytes(uint64(mean)), humanize.IBytes(passthroughMinMean)) + kernel
	}
	return true, fmt.Sprintf("passthrough on: files average %s; ", humanize.IBytes(uint64(mean))) + why
}
