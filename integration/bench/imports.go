package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cachefs/cachefs/integration/slowfs"
)

// The import storm: a Python interpreter importing packages from a tree
// on the slow source, as a job whose PYTHONPATH points at a shared
// filesystem does. Each module is a file (and its cached bytecode) opened
// once, in an order no directory window predicts. The tree is the
// top-level packages the imports load, copied whole from --import-site,
// so it also holds the many files the imports never touch.

// stormSetups are the setups that run the storm (if asked for at all).
var stormSetups = []string{"direct", "cachefs-fixed16", "cachefs-nolist", "cachefs-listall", "cachefs-nopc", "cachefs", "cachefs-index", "floor", "local"}

type stormResult struct {
	Setup   string  `json:"setup"`
	Seconds float64 `json:"seconds"` // staging or mount plus the imports
	Import  float64 `json:"import_seconds"`
	Modules int     `json:"modules"`
	// Bytes is the size of the files the imports read, what the source
	// needs to give at least.
	Bytes  int64         `json:"bytes"`
	Source *sourceCounts `json:"source,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// stormScript imports the modules named in argv and prints the files of
// the modules it loaded from the tree, one a line, with their bytecode.
const stormScript = `
import sys, importlib, importlib.util, os
root = os.environ["PYTHONPATH"]
for m in sys.argv[1:]:
    importlib.import_module(m)
for m in list(sys.modules.values()):
    f = getattr(m, "__file__", None)
    if f and f.startswith(root + "/"):
        print(f[len(root)+1:])
        if f.endswith(".py"):
            c = importlib.util.cache_from_source(f)
            if os.path.exists(c):
                print(c[len(root)+1:])
`

func (b *bench) python(ctx context.Context, root string) (files []string, d time.Duration, err error) {
	cmd := exec.CommandContext(ctx, "python3", append([]string{"-S", "-B", "-c", stormScript}, strings.Split(b.cfg.stormModules, ",")...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+root, "PYTHONDONTWRITEBYTECODE=1")
	cmd.Dir = "/"
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	t0 := time.Now()
	err = cmd.Run()
	d = time.Since(t0)
	if err != nil {
		return nil, d, fmt.Errorf("python3: %v: %s", err, lastLines(stderr.String(), 3))
	}
	files = strings.Fields(out.String())
	slices.Sort(files)
	return slices.Compact(files), d, nil
}

// ensurePyTree copies the packages the imports load from --import-site
// into the workdir once, and returns the copy and the files the imports
// read from it (the storm's floor list).
func (b *bench) ensurePyTree(ctx context.Context) (string, []string, error) {
	h := sha256.Sum256([]byte(b.cfg.stormSite + "\x00" + b.cfg.stormModules))
	dir := filepath.Join(b.cfg.workdir, "pytree-"+hex.EncodeToString(h[:6]))
	marker := dir + ".done"
	if _, err := os.Stat(marker); err != nil {
		files, _, err := b.python(ctx, b.cfg.stormSite)
		if err != nil {
			return "", nil, err
		}
		tops := map[string]bool{}
		for _, f := range files {
			tops[strings.Split(f, "/")[0]] = true
		}
		// Packages look up their own metadata (importlib.metadata).
		infos, _ := filepath.Glob(filepath.Join(b.cfg.stormSite, "*.dist-info"))
		for _, d := range infos {
			tops[filepath.Base(d)] = true
		}
		os.RemoveAll(dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", nil, err
		}
		for top := range tops {
			if err := run(exec.CommandContext(ctx, "cp", "-a", filepath.Join(b.cfg.stormSite, top), dir+"/")); err != nil {
				return "", nil, err
			}
		}
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return "", nil, err
		}
	}
	files, _, err := b.python(ctx, dir)
	return dir, files, err
}

// floorFiles is what the storm's floor fetches: the modules' files and
// the package metadata they read.
func floorFiles(tree string, modules []string) []string {
	out := slices.Clone(modules)
	infos, _ := filepath.Glob(filepath.Join(tree, "*.dist-info"))
	for _, d := range infos {
		filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.Type().IsRegular() {
				rel, _ := filepath.Rel(tree, p)
				out = append(out, rel)
			}
			return nil
		})
	}
	return out
}

// importStorm runs the storm for every setup that has it, each on a fresh
// fixture with the page cache dropped, and times staging plus imports.
func (b *bench) importStorm(ctx context.Context) []stormResult {
	if b.cfg.stormModules == "" {
		return nil
	}
	tree, files, err := b.ensurePyTree(ctx)
	if err != nil {
		progress("import storm skipped: %v", err)
		return nil
	}
	b.stormTree = tree
	progress("import storm: %s from a tree of %s (%d files read)", b.cfg.stormModules, tree, len(files))
	var res []stormResult
	for _, s := range b.cfg.setups {
		if !slices.Contains(stormSetups, s) || ctx.Err() != nil {
			continue
		}
		r := b.stormOnce(ctx, s, tree, files)
		progress("import storm: %s: %.2fs (imports %.2fs, %d modules) %s", s, r.Seconds, r.Import, r.Modules, r.Error)
		res = append(res, r)
	}
	return res
}

func (b *bench) stormOnce(ctx context.Context, setup, tree string, files []string) stormResult {
	r := stormResult{Setup: setup}
	b.dropCaches()
	var cl cleanups
	defer func() {
		if err := cl.run(); err != nil && r.Error == "" {
			r.Error = err.Error()
		}
	}()
	src := tree
	var fix *slowfs.FS
	if setup != "local" {
		src = filepath.Join(b.run, "storm-"+setup+"-source")
		os.Mkdir(src, 0o755)
		var err error
		if fix, err = slowfs.Mount(tree, src, b.cfg.fixture); err != nil {
			r.Error = err.Error()
			return r
		}
		cl.push(fix.Unmount)
	}
	if err := b.prepareIndex(ctx, "storm-"+setup, tree); err != nil {
		r.Error = err.Error()
		return r
	}
	t0 := time.Now()
	root, err := b.stormStage(ctx, setup, src, files, &cl)
	if err == nil {
		var got []string
		var d time.Duration
		got, d, err = b.python(ctx, root)
		r.Import, r.Modules = d.Seconds(), len(got)
		if err == nil && !slices.Equal(got, files) {
			err = fmt.Errorf("imports read %d files, want %d", len(got), len(files))
		}
	}
	r.Seconds = time.Since(t0).Seconds()
	if err != nil {
		r.Error = err.Error()
	}
	if fix != nil {
		c := fix.Counts()
		r.Source = &sourceCounts{Meta: c.Meta, Opens: c.Opens, Reads: c.Reads, BytesRead: c.BytesRead}
	}
	return r
}

// stormStage makes the tree readable the setup's way; the floor copies
// the files the imports read, 128 at once, and the directories they are
// in, then imports from local disk.
func (b *bench) stormStage(ctx context.Context, setup, src string, files []string, cl *cleanups) (string, error) {
	switch setup {
	case "direct", "local":
		return src, nil
	case "floor":
		dst := b.scratch("storm-floor", "copy", cl)
		files = floorFiles(b.stormTree, files)
		for _, f := range files {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, f)), 0o755); err != nil {
				return "", err
			}
		}
		return dst, copyFiles(ctx, src, dst, files, floorInFlight)
	}
	return b.cachefsMount(ctx, "storm-"+setup, src, cl, cachefsVariants[setup]...)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}
