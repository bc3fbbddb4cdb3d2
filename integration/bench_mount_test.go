package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// makeEEGTree lays out a BIDS-like tree of about `files` small files in
// datasets/subjects plus one flat directory of `flat` files, the
// image-dataset shape. Contents are tiny: this measures metadata.
func makeEEGTree(tb testing.TB, root string, subjects, runs, flat int) int {
	n := 0
	mk := func(p string, data string) {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			tb.Fatal(err)
		}
		n++
	}
	ds := filepath.Join(root, "ds000001")
	os.MkdirAll(ds, 0o755)
	mk(filepath.Join(ds, "dataset_description.json"), `{"Name":"bench"}`)
	mk(filepath.Join(ds, "participants.tsv"), "participant_id\n")
	for s := 0; s < subjects; s++ {
		d := filepath.Join(ds, fmt.Sprintf("sub-%03d", s), "eeg")
		os.MkdirAll(d, 0o755)
		n += 2
		for r := 0; r < runs; r++ {
			pre := filepath.Join(d, fmt.Sprintf("sub-%03d_task-rest_run-%02d", s, r))
			for _, suf := range []string{"_eeg.edf", "_eeg.json", "_channels.tsv", "_events.tsv"} {
				mk(pre+suf, suf)
			}
		}
	}
	img := filepath.Join(root, "images")
	os.MkdirAll(img, 0o755)
	n++
	for i := 0; i < flat; i++ {
		mk(filepath.Join(img, fmt.Sprintf("img_%06d.png", i)), "x")
	}
	return n + 2
}

// makePackageTree lays out a tree of the shape of a Python site-packages:
// many packages of nested small directories (fan-out 3, depth 4, five
// modules each), about 24,000 entries. It returns the entry count.
func makePackageTree(tb testing.TB, root string, packages int) int {
	n := 1
	var fill func(dir string, depth int)
	fill = func(dir string, depth int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		for f := 0; f < 5; f++ {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("mod%d.py", f)), []byte("x = 1\n"), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
		n += 6
		if depth < 3 {
			for k := 0; k < 3; k++ {
				fill(filepath.Join(dir, fmt.Sprintf("sub%d", k)), depth+1)
			}
		}
	}
	for p := 0; p < packages; p++ {
		fill(filepath.Join(root, fmt.Sprintf("pkg%03d", p)), 0)
	}
	return n
}

// BenchmarkMountWalk times `cachefs mount` (the snapshot walk) of a
// 24,000-entry tree behind the slow-source fixture at 1 ms per metadata
// operation, next to `find -ls` of the same source (one stat per entry, the
// serial walk a job would otherwise do), and next to an --allow-other mount,
// whose walk also records POSIX ACLs. Run with -benchtime=1x.
// The "packages" shape has 4,000 directories of 5 files each, where the
// "eeg" shape has 104, most of whose entries are in one directory.
func BenchmarkMountWalk(b *testing.B) {
	b.Run("eeg", func(b *testing.B) {
		benchMountWalk(b, func(src string) int { return makeEEGTree(b, src, 50, 20, 20_000) })
	})
	b.Run("packages", func(b *testing.B) {
		benchMountWalk(b, func(src string) int { return makePackageTree(b, src, 100) })
	})
}

func benchMountWalk(b *testing.B, makeTree func(src string) int) {
	base := b.TempDir()
	src := filepath.Join(base, "src")
	entries := makeTree(src)
	opts := slowfs.Options{MetaLatency: time.Millisecond, ReadLatency: 500 * time.Microsecond,
		CacheTimeout: time.Hour, DisableReadDirPlus: true}
	e := &env{t: b, tmp: base}
	// mount times one mount of a fresh fixture over src.
	mount := func(slow, mnt string, extra ...string) (secs float64, meta uint64) {
		os.Mkdir(slow, 0o755)
		sfs, err := slowfs.Mount(src, slow, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer sfs.Unmount()
		start := time.Now()
		r := e.run(append([]string{"mount", slow, mnt}, extra...)...)
		secs = time.Since(start).Seconds()
		if r.code != 0 {
			b.Fatalf("mount: %d %s", r.code, r.stderr)
		}
		meta = sfs.Counts().Meta
		if u := e.run("unmount", mnt); u.code != 0 {
			b.Errorf("unmount: %s", u.stderr)
		}
		return secs, meta
	}
	for i := 0; i < b.N; i++ {
		slow := filepath.Join(base, fmt.Sprintf("slow%d", i))
		mnt := filepath.Join(base, fmt.Sprintf("mnt%d", i))
		mountSecs, meta := mount(slow, mnt)
		sharedSecs, sharedMeta := mount(slow+"s", mnt+"s", "--allow-other")

		// The same source, fresh kernel caches, walked serially.
		os.Mkdir(slow+"b", 0o755)
		sfs, err := slowfs.Mount(src, slow+"b", opts)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if out, err := exec.Command("find", slow+"b", "-ls").Output(); err != nil || len(out) == 0 {
			b.Errorf("find: %v", err)
		}
		findSecs := time.Since(start).Seconds()
		sfs.Unmount()

		b.ReportMetric(float64(entries), "entries")
		b.ReportMetric(mountSecs, "mount-s")
		b.ReportMetric(float64(meta), "mount-source-meta-ops")
		b.ReportMetric(sharedSecs, "allow-other-mount-s")
		b.ReportMetric(float64(sharedMeta), "allow-other-source-meta-ops")
		b.ReportMetric(findSecs, "find-ls-s")
		b.ReportMetric(findSecs/mountSecs, "find/mount")
	}
}
