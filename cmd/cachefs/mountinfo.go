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

// runtimeDir holds the records of this user's mounts.
func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "cachefs")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("cachefs-%d", os.Getuid()), "run")
}

func recordPath(mountpoint string) string {
	h := sha256.Sum256([]byte(mountpoint))
	return filepath.Join(runtimeDir(), hex.EncodeToString(h[:8])+".json")
}

// writeRecord replaces the record atomically so a reader never sees half.
func writeRecord(r *record) error {
	p := recordPath(r.Mountpoint)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

func readRecord(mountpoint string) (*record, error) {
	b, err := os.ReadFile(recordPath(mountpoint))
	if err != nil {
		return nil, err
	}
	r := &record{}
	return r, json.Unmarshal(b, r)
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
