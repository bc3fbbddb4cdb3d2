// Package proc answers, from /proc, the two questions every black-box check
// of cachefs asks: is this process still running, and what is mounted
// here. The test harness and the benchmark harness share it so that both
// judge "left behind" the same way.
//
// Invariants: nothing here changes the system; a /proc that cannot be read
// answers "not running" and "nothing mounted".
package proc

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Alive reports whether pid runs. A zombie does not count: the cachefs
// daemon is not the caller's child, and its reaper may be slow.
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// MountPoints lists the mount points in /proc/self/mountinfo that are dir
// or inside it.
func MountPoints(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	unesc := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			if p := unesc.Replace(fields[4]); p == dir || strings.HasPrefix(p, dir+"/") {
				out = append(out, p)
			}
		}
	}
	return out
}

// IsMounted reports whether p itself is a mount point.
func IsMounted(p string) bool {
	return slices.Contains(MountPoints(p), p)
}
