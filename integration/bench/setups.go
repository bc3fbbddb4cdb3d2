package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
	"github.com/cachefs/cachefs/mounttable"

	"golang.org/x/sys/unix"
)

// allSetups is the canonical order: the slow baseline first, then the
// peers and cachefs's variants, then the two floors: floor (every file
// fetched at once, then local disk) and local (no source at all).
var allSetups = []string{"direct", "rsync", "tar", "rclone", "cachefs-noprefetch", "cachefs-fixed16", "cachefs-nolist", "cachefs-listall", "cachefs-nopc", "cachefs", "cachefs-warm-nopc", "cachefs-warm", "cachefs-index", "cachefs-nodes4", "cachefs-peers4", "floor", "local"}

// cachefsVariants are the cachefs setups and the flags that make each,
// so every policy's gain is measured side by side in one run.
var cachefsVariants = map[string][]string{
	// The defaults: prefetch on open, and on listing a directory of 256
	// entries or more.
	"cachefs": nil,
	// The block cache alone.
	"cachefs-noprefetch": {"--prefetch", "off"},
	// The prefetcher as it was: 16 in flight, started on open only.
	"cachefs-fixed16": {"--prefetch-workers", "16", "--prefetch", "dir"},
	// The adaptive prefetcher started on open only, to show what listing
	// adds.
	"cachefs-nolist": {"--prefetch", "dir"},
	// Listing prefetch of every directory listed, however short.
	"cachefs-listall": {"--prefetch-list-min", "0"},
	// The whole tree staged in the background from the moment the mount
	// serves.
	"cachefs-warm": {"--warm", "."},
	// The defaults, mounted from a snapshot index (see fromIndex).
	"cachefs-index": nil,
	// The same two without handing prefetched small files to the
	// kernel's page cache, to measure what that gains.
	"cachefs-nopc":      {"--no-page-cache"},
	"cachefs-warm-nopc": {"--warm", ".", "--no-page-cache"},
}

// fromIndex are the setups that mount from a snapshot index made before
// their timer starts, as a job does from the index a login node made once
// for every job and node (`cachefs snapshot`); the floor, too, starts with
// its file list known. The index is made through a fixture of its own, so
// the timed one serves the mount no walk.
var fromIndex = map[string]bool{"cachefs-index": true}

// prepareIndex makes the index of tree that the mount named name (a setup,
// or "storm-" and a setup) will mount from, if its setup mounts from one.
func (b *bench) prepareIndex(ctx context.Context, name, tree string) error {
	if !fromIndex[strings.TrimPrefix(name, "storm-")] {
		return nil
	}
	src := filepath.Join(b.run, name+"-indexed")
	if err := os.Mkdir(src, 0o755); err != nil {
		return err
	}
	fix, err := slowfs.Mount(tree, src, b.cfg.fixture)
	if err != nil {
		return err
	}
	idx := filepath.Join(b.run, name+".idx")
	err = run(b.cachefsCmd(ctx, "snapshot", src, "-o", idx))
	if uerr := fix.Unmount(); err == nil {
		err = uerr
	}
	b.indexes[name] = idx
	return err
}

// tools each setup runs; a missing one skips the setup rather than failing
// the run, since peers are optional on a given machine.
var setupTools = map[string][]string{
	"rsync":  {"rsync"},
	"tar":    {"tar"},
	"rclone": {"rclone", "fusermount3"},
}

func missingTools(setup string) []string {
	var miss []string
	for _, t := range setupTools[setup] {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// cleanups runs teardown steps last-in first-out, so a mount stacked on the
// fixture always goes before the fixture itself.
type cleanups struct{ fns []func() error }

func (c *cleanups) push(f func() error) { c.fns = append(c.fns, f) }

func (c *cleanups) run() error {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		errs = append(errs, c.fns[i]())
	}
	c.fns = nil
	return errors.Join(errs...)
}

// run runs cmd and folds its stderr into the error.
func run(cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, tail(stderr.String()))
	}
	return nil
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// waitExit waits up to d for a process we started to be gone; for a child
// this needs exited, since an unreaped child stays visible.
func waitExit(pid int, exited <-chan struct{}, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if exited != nil {
			select {
			case <-exited:
				return true
			default:
			}
		} else if !mounttable.ProcessAlive(pid) {
			return true
		}
		select {
		case <-deadline:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop ends a process this harness started, politely first.
func stop(pid int, exited <-chan struct{}) {
	if waitExit(pid, exited, 10*time.Second) {
		return
	}
	progress("process %d still running; SIGTERM", pid)
	syscall.Kill(pid, syscall.SIGTERM)
	if !waitExit(pid, exited, 5*time.Second) {
		syscall.Kill(pid, syscall.SIGKILL)
		waitExit(pid, exited, 5*time.Second)
	}
}

// stage makes the tree at src readable the way setup does and returns the
// root to read; this is the timed "mount" phase. Teardown goes on cl before
// anything that could leave state behind, so a failure half way is cleaned.
func (b *bench) stage(ctx context.Context, setup, src string, cl *cleanups) (string, error) {
	switch setup {
	case "direct", "local":
		return src, nil
	case "rsync":
		dst := b.scratch(setup, "copy", cl)
		return dst, run(exec.CommandContext(ctx, "rsync", "-a", src+"/", dst+"/"))
	case "tar":
		dst := b.scratch(setup, "copy", cl)
		return dst, tarPipe(ctx, src, dst)
	case "rclone":
		return b.rclone(ctx, src, cl)
	case "floor":
		return b.floor(ctx, src, cl)
	}
	if args, ok := cachefsVariants[setup]; ok {
		return b.cachefsMount(ctx, setup, src, cl, args...)
	}
	return "", fmt.Errorf("unknown setup %q", setup)
}

// scratch makes an empty directory for setup that is removed at teardown.
// Only directories made here are ever removed recursively: the fixture is
// a writable loopback of the dataset, so a recursive remove that strayed
// into a live mount would delete the dataset itself.
func (b *bench) scratch(setup, what string, cl *cleanups) string {
	d := filepath.Join(b.run, setup+"-"+what)
	os.MkdirAll(d, 0o755)
	cl.push(func() error {
		if m := mounttable.MountPoints(d); len(m) > 0 {
			return fmt.Errorf("not removing %s: %v still mounted", d, m)
		}
		return os.RemoveAll(d)
	})
	return d
}

func tarPipe(ctx context.Context, src, dst string) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	create := exec.CommandContext(ctx, "tar", "-C", src, "-cf", "-", ".")
	extract := exec.CommandContext(ctx, "tar", "-C", dst, "-xf", "-")
	create.Stdout, extract.Stdin = pw, pr
	var cerr, xerr bytes.Buffer
	create.Stderr, extract.Stderr = &cerr, &xerr
	if err := create.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	err = extract.Start()
	pr.Close()
	pw.Close() // extract must see EOF when create exits
	if err != nil {
		create.Wait()
		return err
	}
	e1, e2 := create.Wait(), extract.Wait()
	if e1 != nil || e2 != nil {
		return fmt.Errorf("tar: create: %v %s; extract: %v %s", e1, tail(cerr.String()), e2, tail(xerr.String()))
	}
	return nil
}

// rclone starts `rclone mount` in the background; it counts as mounted once
// the mount point shows up in mountinfo.
func (b *bench) rclone(ctx context.Context, src string, cl *cleanups) (string, error) {
	mnt := filepath.Join(b.run, "rclone-mnt")
	cache := b.scratch("rclone", "cache", cl)
	os.Mkdir(mnt, 0o755)
	conf := filepath.Join(b.run, "rclone.conf")
	os.WriteFile(conf, nil, 0o600) // keeps rclone off ~/.config
	logPath := filepath.Join(b.run, "rclone.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command("rclone", "mount", "--vfs-cache-mode", "full", "--read-only",
		src, mnt, "--cache-dir", cache)
	cmd.Env = append(os.Environ(), "RCLONE_CONFIG="+conf)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, "/"
	// Its own process group: a terminal ^C must reach only the harness,
	// which then unmounts rclone in order rather than racing it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	cl.push(func() error {
		var err error
		if mounttable.IsMounted(mnt) {
			if err = run(exec.Command("fusermount3", "-u", mnt)); err != nil {
				err = errors.Join(err, unix.Unmount(mnt, unix.MNT_DETACH))
			}
		}
		stop(cmd.Process.Pid, exited)
		return err
	})
	for !mounttable.IsMounted(mnt) {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return "", fmt.Errorf("rclone exited before mounting: %s", tail(string(log)))
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return mnt, nil
}

var (
	daemonPid  = regexp.MustCompile(`daemon pid (\d+)`)
	unreadable = regexp.MustCompile(`, (\d+) unreadable`)
)

// cachefsMount runs `cachefs mount`, which returns once the mount serves.
func (b *bench) cachefsMount(ctx context.Context, setup, src string, cl *cleanups, extra ...string) (string, error) {
	mnt := filepath.Join(b.run, setup+"-mnt")
	cache := b.scratch(setup, "cache", cl)
	pid := 0
	cl.push(func() error {
		var err error
		if mounttable.IsMounted(mnt) {
			cmd := b.cachefsCmd(context.Background(), "unmount", mnt)
			var out bytes.Buffer
			cmd.Stdout = &out
			if err = run(cmd); err != nil {
				err = errors.Join(err, unix.Unmount(mnt, unix.MNT_DETACH))
			}
			progress("%s", strings.TrimSpace(out.String()))
		}
		if pid > 0 {
			stop(pid, nil)
		}
		daemonWarnings(filepath.Join(cache, "cachefs.log"))
		return err
	})
	if idx := b.indexes[setup]; idx != "" {
		extra = append(extra, "--index", idx)
	}
	if b.cfg.cpuProfiles != "" {
		extra = append(extra, "--cpuprofile", filepath.Join(b.cfg.cpuProfiles, setup+".pprof"))
	}
	cmd := b.cachefsCmd(ctx, append([]string{"mount", src, mnt, "--cache-dir", cache}, extra...)...)
	// The launcher turns SIGTERM into "stop the daemon, nothing mounted";
	// SIGKILL would orphan a daemon that then mounts anyway.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout = &out
	err := run(cmd)
	if m := daemonPid.FindStringSubmatch(out.String()); m != nil {
		pid, _ = strconv.Atoi(m[1])
	}
	if err != nil {
		return "", err
	}
	progress("%s", strings.TrimSpace(out.String()))
	// Every entry of the dataset is readable, so a snapshot that left any
	// out cannot serve the workload; say so here rather than as an ENOENT
	// in a later phase.
	if m := unreadable.FindStringSubmatch(out.String()); m != nil && m[1] != "0" {
		return "", fmt.Errorf("cachefs left %s entries out of its snapshot as unreadable (see the cachefs log lines)", m[1])
	}
	return mnt, nil
}

// cachefsCmd keeps cachefs's runtime records in the run directory, away
// from any real mounts on the machine.
func (b *bench) cachefsCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, b.cachefs, args...)
	cmd.Env = append(os.Environ(), "TMPDIR="+b.run, "XDG_RUNTIME_DIR=")
	cmd.Dir = "/"
	return cmd
}

// daemonWarnings repeats what the daemon logged above info level, and how
// many small files it handed to the kernel's page cache, since its log
// goes away with the run directory.
func daemonWarnings(logPath string) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "page cache") || strings.Contains(line, " WRN ") || strings.Contains(line, " ERR ") || strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) {
			if n++; n <= 10 {
				progress("cachefs log: %s", line)
			}
		}
	}
	if n > 10 {
		progress("cachefs log: ... %d more warnings and errors", n-10)
	}
}
