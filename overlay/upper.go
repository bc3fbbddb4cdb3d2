package overlay

import (
	"io/fs"
	"os"
	"path/filepath"
)

// Usage counts the regular files in an upper layer and their bytes: what
// a push would consider and what discarding it loses. Whiteouts and
// directories are not counted.
func Usage(upper string) (files, bytes int64, err error) {
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				files++
				bytes += fi.Size()
			}
		}
		return nil
	})
	return files, bytes, err
}

// Discard removes the upper layer's contents and overlayfs's scratch
// directory, keeping the directories themselves. os.RemoveAll never
// follows a symlink, so a link planted through the view removes only
// itself.
func Discard(l Layout) error {
	for _, dir := range []string{l.Upper, l.Work} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := os.Remove(l.Base); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}

// LayoutOf names the directories of a writable view whose CACHE/writable
// directory is dir, without creating or checking anything.
func LayoutOf(dir string) Layout {
	return Layout{Dir: dir, Lower: filepath.Join(dir, "lower"), Upper: filepath.Join(dir, "upper"),
		Work: filepath.Join(dir, "work"), Base: filepath.Join(dir, "base.index")}
}
