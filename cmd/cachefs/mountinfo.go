package main

import (
	"bufio"
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

const fsType = "fuse.cachefs"

// detach unmounts path. Root calls umount2 directly; others go through
// fusermount3, the setuid helper that mounted it.
func detach(path string, lazy bool) error {
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
	out, err := exec.Command(bin, append(args, path)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return &os.PathError{Op: "umount", Path: path, Err: unix.EBUSY}
		}
		return fmt.Errorf("%s: %s (%w)", bin, msg, err)
	}
	return nil
}

// isStale reports whether path is a FUSE mount whose daemon is gone: the
// kernel answers ENOTCONN, or ECONNABORTED once the connection was aborted,
// for every request that reaches it. The probe is statfs because the kernel
// never caches it, while a stat of the root may be answered from the
// attribute cache a dead daemon left behind.
func isStale(path string) bool {
	var st unix.Statfs_t
	err := unix.Statfs(path, &st)
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
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
}

// runtimeDirSpec says where this user's mounts leave their records: the
// parent, trusted as a whole, and the private directories made below it.
// Root's is /run/cachefs whatever the session: a job prologue has no
// XDG_RUNTIME_DIR, and root's later interactive shell must find its records.
// Others use $XDG_RUNTIME_DIR/cachefs or, failing that, a directory of
// their own under the shared TMPDIR.
func runtimeDirSpec() (parent string, names []string) {
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
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
