package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cachefs/cachefs/privdir"
	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Mountpoint string
	FSType     string
	Source     string
}

// unescapeMountinfo undoes the kernel's octal escaping of space, tab,
// newline and backslash in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readMountinfo() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), " ")
		sep := -1
		for i, fl := range fields {
			if fl == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mountEntry{
			Mountpoint: unescapeMountinfo(fields[4]),
			FSType:     fields[sep+1],
			Source:     unescapeMountinfo(fields[sep+2]),
		})
	}
	return out, sc.Err()
}

// findMount returns the last (topmost) mount at path, if any.
func findMount(path string) (mountEntry, bool, error) {
	ms, err := readMountinfo()
	if err != nil {
		return mountEntry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Mountpoint == path {
			return ms[i], true, nil
		}
	}
	return mountEntry{}, false, nil
}

// mountsAt counts the mounts stacked at path, so that a caller can tell
// whether one appeared since it last looked.
func mountsAt(path string) (int, error) {
	ms, err := readMountinfo()
	n := 0
	for _, m := range ms {
		if m.Mountpoint == path {
			n++
		}
	}
	return n, err
}

const fsType = "fuse.cachefs"

// detachTimeout bounds fusermount3 when detach is not given a deadline.
const detachTimeout = 10 * time.Second

// detach unmounts path. Root calls umount2 directly; others go through
// fusermount3, the setuid helper that mounted it.
func detach(path string, lazy bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
	defer cancel()
	return detachCtx(ctx, path, lazy)
}

// detachCtx is detach with the caller's deadline on fusermount3. umount2
// itself never waits on the daemon: the kernel does not ask a FUSE
// daemon before it unmounts, so a stopped daemon cannot hold it.
func detachCtx(ctx context.Context, path string, lazy bool) error {
	if os.Geteuid() == 0 {
		flags := 0
		if lazy {
			flags = unix.MNT_DETACH
		}
		if err := unix.Unmount(path, flags); err != nil {
			return &os.PathError{Op: "umount", Path: path, Err: err}
		}
		return nil
	}
	bin := "fusermount3"
	if _, err := exec.LookPath(bin); err != nil {
		bin = "fusermount"
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.CommandContext(ctx, bin, append(args, path)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return &os.PathError{Op: "umount", Path: path, Err: unix.EBUSY}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s did not finish: %w", bin, ctx.Err())
		}
		return fmt.Errorf("%s: %s (%w)", bin, msg, err)
	}
	return nil
}

// probeTimeout bounds a liveness probe of a mount. A daemon that answers
// at all answers statfs in microseconds; one that is stopped, or wedged
// in a source that hangs, never does, and must not take the CLI with it.
const probeTimeout = 2 * time.Second

// mountHealth is what a probe learnt about a mount's daemon.
type mountHealth int

const (
	mountAnswers mountHealth = iota
	// mountDead: the kernel answers ENOTCONN, or ECONNABORTED once the
	// connection was aborted, for every request: the daemon is gone.
	mountDead
	// mountSilent: no answer before the deadline; the daemon is stopped
	// or stuck, and may yet answer.
	mountSilent
)

// probeMount asks for path's statfs, which the kernel never caches, while a
// stat of the root may be answered from the attribute cache a dead daemon
// left behind. The call runs on its own goroutine: if the daemon never
// answers, only that goroutine (and its thread) waits, until the process
// exits, which the kernel allows however stuck the request is.
func probeMount(path string, timeout time.Duration) mountHealth {
	done := make(chan error, 1)
	go func() {
		var st unix.Statfs_t
		done <- unix.Statfs(path, &st)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-done:
		if errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) {
			return mountDead
		}
		return mountAnswers
	case <-t.C:
		return mountSilent
	}
}

// isStale reports whether path is a FUSE mount whose daemon is gone. A
// daemon that does not answer within probeTimeout is not called gone: it
// may be stopped, and its mount is then still someone's.
func isStale(path string) bool {
	return probeMount(path, probeTimeout) == mountDead
}

// record is what a daemon leaves in the runtime directory so that unmount
// can find its pid and the figures it served.
type record struct {
	Pid        int          `json:"pid"`
	Source     string       `json:"source"`
	Mountpoint string       `json:"mountpoint"`
	CacheDir   string       `json:"cache_dir"`
	LogFile    string       `json:"log_file"`
	Started    time.Time    `json:"started"`
	Exited     bool         `json:"exited,omitempty"`
	Final      *statusReply `json:"final,omitempty"`
	// Writable is set for a writable view: MOUNTPOINT is the view, and
	// the daemon serves the read-only layer below it.
	Writable *writableRecord `json:"writable,omitempty"`
}

// runtimeDirSpec says where this user's mounts leave their records: the
// parent, trusted as a whole, and the private directories made below it.
// Root's is /run/cachefs whatever the session: a job prologue has no
// XDG_RUNTIME_DIR, and root's later interactive shell must find its records.
// Others use $XDG_RUNTIME_DIR/cachefs or, failing that, a directory of
// their own under the shared TMPDIR. CACHEFS_RUNTIME_DIR overrides all of
// them, for a site that keeps records elsewhere and for test suites that
// must not see each other's mounts; it is checked like any other.
func runtimeDirSpec() (parent string, names []string) {
	if d := os.Getenv("CACHEFS_RUNTIME_DIR"); d != "" {
		d = filepath.Clean(d)
		return filepath.Dir(d), []string{filepath.Base(d)}
	}
	if os.Geteuid() == 0 {
		if fi, err := os.Stat("/run"); err == nil && fi.IsDir() {
			return "/run", []string{"cachefs"}
		}
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d, []string{"cachefs"}
	}
	return os.TempDir(), []string{fmt.Sprintf("cachefs-%d", os.Geteuid()), "run"}
}

// runtimeDir is the runtime directory's name, unverified: for removing a
// record, which unlinks without following a link.
func runtimeDir() string {
	parent, names := runtimeDirSpec()
	return filepath.Join(append([]string{parent}, names...)...)
}

// makeRuntimeDir creates or adopts the runtime directory (package privdir).
func makeRuntimeDir() (string, error) {
	parent, names := runtimeDirSpec()
	return privdir.Make(parent, names...)
}

// findRuntimeDir verifies the runtime directory without creating it.
func findRuntimeDir() (string, error) {
	parent, names := runtimeDirSpec()
	return privdir.Find(parent, names...)
}

func recordName(mountpoint string) string {
	h := sha256.Sum256([]byte(mountpoint))
	return hex.EncodeToString(h[:8]) + ".json"
}

func recordPath(mountpoint string) string {
	return filepath.Join(runtimeDir(), recordName(mountpoint))
}

// writeRecord replaces the record atomically so a reader never sees half.
func writeRecord(r *record) error {
	dir, err := makeRuntimeDir()
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return privdir.WriteReplace(dir, recordName(r.Mountpoint), b)
}

func readRecord(mountpoint string) (*record, error) {
	dir, err := findRuntimeDir()
	if err != nil {
		return nil, warnForeign(err)
	}
	return readRecordFile(filepath.Join(dir, recordName(mountpoint)))
}

// readRecordFile reads a record only if it is a file of this user's, not a
// link: a record steers unmount and status to a pid and a socket.
func readRecordFile(path string) (*record, error) {
	b, err := privdir.ReadOwned(path, 1<<20)
	if err != nil {
		return nil, warnForeign(err)
	}
	r := &record{}
	return r, json.Unmarshal(b, r)
}

// warnForeign says on stderr that a record or its directory is ignored
// because another user could have made it; callers treat it as missing.
func warnForeign(err error) error {
	if errors.Is(err, privdir.ErrNotPrivate) {
		fmt.Fprintf(os.Stderr, "cachefs: warning: ignoring the runtime record: %v\n", err)
	}
	return err
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return false
	}
	// A zombie still answers kill(0); it is gone for our purposes.
	st := procState(pid)
	return st != 0 && st != 'Z'
}

// procState is the state letter of /proc/PID/stat (R, S, D, T, t, Z...),
// or 0 if the process is not there.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2]
	}
	return '?'
}

// isStopped reports whether pid is stopped by a signal or a debugger.
func isStopped(pid int) bool {
	st := procState(pid)
	return st == 'T' || st == 't'
}

// whyNoAnswer says, for a message, what the daemon that did not answer a
// probe is doing, as far as /proc tells.
func whyNoAnswer(pid int) string {
	switch procState(pid) {
	case 0, 'Z':
		return fmt.Sprintf("daemon %d is gone", pid)
	case 'T', 't':
		return fmt.Sprintf("daemon %d is stopped (SIGSTOP or a debugger)", pid)
	case 'D':
		return fmt.Sprintf("daemon %d is waiting in the kernel, on its source or disk", pid)
	}
	return fmt.Sprintf("daemon %d is running but does not answer", pid)
}
