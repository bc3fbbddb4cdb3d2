// Package mounttable answers what the kernel's mount table and /proc say
// about a cachefs mount: what is mounted where, whether its daemon still
// answers, whether that daemon's process runs, and it detaches a mount.
// Resolve gives a path the name the kernel records for a mount made
// through it.
// The CLI, the integration tests and the benchmark all import it, so that
// each judges "mounted", "dead" and "left behind" the same way.
//
// # Deadlines
//
// Nothing here waits on a FUSE daemon without a deadline: a probe of a
// mount runs on a goroutine of its own and is abandoned when its time is
// up, and fusermount3 runs under the caller's context. umount2 never asks
// the daemon, so it needs none.
//
// Invariants: only Detach changes the system; a mount table that cannot be
// read is reported as an error by Read and Find, and as "nothing mounted"
// by the helpers the tests use.
package mounttable

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// FSType is the type cachefs mounts carry in the mount table.
const FSType = "fuse.cachefs"

// Entry is one line of /proc/self/mountinfo.
type Entry struct {
	Mountpoint string
	FSType     string
	Source     string
}

// unescape undoes the kernel's octal escaping of space, tab, newline and
// backslash in mountinfo paths.
func unescape(s string) string {
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

// Read parses /proc/self/mountinfo.
func Read() ([]Entry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if e, ok := parseLine(sc.Text()); ok {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}

// parseLine reads one mountinfo line: the mount point is the fifth field,
// and the type and source follow the "-" that ends the optional fields.
func parseLine(line string) (Entry, bool) {
	fields := strings.Split(line, " ")
	sep := -1
	for i, fl := range fields {
		if fl == "-" {
			sep = i
			break
		}
	}
	if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
		return Entry{}, false
	}
	return Entry{
		Mountpoint: unescape(fields[4]),
		FSType:     fields[sep+1],
		Source:     unescape(fields[sep+2]),
	}, true
}

// Find returns the last (topmost) mount at path, if any.
func Find(path string) (Entry, bool, error) {
	ms, err := Read()
	if err != nil {
		return Entry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Mountpoint == path {
			return ms[i], true, nil
		}
	}
	return Entry{}, false, nil
}

// CountAt counts the mounts stacked at path, so that a caller can tell
// whether one appeared since it last looked.
func CountAt(path string) (int, error) {
	ms, err := Read()
	n := 0
	for _, m := range ms {
		if m.Mountpoint == path {
			n++
		}
	}
	return n, err
}

// MountPoints lists the mount points that are dir or inside it; nil if the
// table cannot be read.
func MountPoints(dir string) []string {
	ms, _ := Read()
	var out []string
	for _, m := range ms {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	return out
}

// IsMounted reports whether p itself is a mount point.
func IsMounted(p string) bool {
	_, ok, _ := Find(p)
	return ok
}
