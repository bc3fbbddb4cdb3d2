package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
)

// sums is what a phase read. Sum adds one 64-bit digest per item, and
// addition commutes, so the total does not depend on the order items were
// read in or on how they were split among workers.
type sums struct {
	Items int64  `json:"items"`
	Bytes int64  `json:"bytes"` // file content bytes read
	Sum   uint64 `json:"sum"`
}

func (s *sums) add(o sums) {
	s.Items += o.Items
	s.Bytes += o.Bytes
	s.Sum += o.Sum
}

const peekSize = 4 << 10

// workerMain is one reader process. It loads its share of the work list,
// says "ready", and starts only on "go", so process start-up stays out of
// the timed phase and all workers start together.
func workerMain(args []string) error {
	f := flag.NewFlagSet("worker", flag.ContinueOnError)
	root := f.String("root", "", "tree to read")
	phase := f.String("phase", "", "scan, peek, or a full-read phase")
	list := f.String("list", "", "work list, one relative path a line")
	index := f.Int("index", 0, "this worker's index")
	of := f.Int("of", 1, "number of workers")
	if err := f.Parse(args); err != nil {
		return err
	}
	b, err := os.ReadFile(*list)
	if err != nil {
		return err
	}
	var mine []string
	for i, rel := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if i%*of == *index {
			mine = append(mine, rel)
		}
	}
	fmt.Println("ready")
	if line, _ := bufio.NewReader(os.Stdin).ReadString('\n'); line != "go\n" {
		return nil // the harness went away
	}
	var res sums
	buf := make([]byte, 1<<20) // whole-file reads in big chunks, as loaders do
	for _, rel := range mine {
		h := sha256.New()
		io.WriteString(h, rel+"\x00")
		p := filepath.Join(*root, rel)
		var n int64
		switch *phase {
		case "scan":
			n, err = scanEntry(h, p, rel, buf)
		case "peek":
			n, err = readInto(h, p, peekSize, buf)
		default:
			n, err = readInto(h, p, -1, buf)
		}
		if err != nil {
			return err
		}
		res.add(sums{Items: 1, Bytes: n, Sum: binary.LittleEndian.Uint64(h.Sum(nil))})
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// scanEntry stats one entry and lists it if it is a directory. Only the kind,
// the size of files and the names in directories enter the digest: modes,
// owners, times and directory sizes legitimately differ between a staged
// copy, rclone and cachefs.
func scanEntry(h hash.Hash, p, rel string, buf []byte) (int64, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, err
	}
	switch {
	case fi.IsDir():
		d, err := os.Open(p)
		if err != nil {
			return 0, err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return 0, fmt.Errorf("readdir %s: %w", p, err)
		}
		slices.Sort(names)
		fmt.Fprintf(h, "d\x00%s", strings.Join(names, "\x00"))
	case fi.Mode().IsRegular():
		fmt.Fprintf(h, "f\x00%d\x00", fi.Size())
		if isSidecar(rel) {
			return readInto(h, p, -1, buf)
		}
	default:
		fmt.Fprintf(h, "o\x00%v", fi.Mode().Type())
	}
	return 0, nil
}

// readInto hashes the first limit bytes of p (all of it if limit < 0) with
// plain read(2) calls of len(buf), sidestepping io.Copy's own 32 KiB buffer.
func readInto(h hash.Hash, p string, limit int64, buf []byte) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	for limit < 0 || n < limit {
		b := buf
		if limit >= 0 && int64(len(b)) > limit-n {
			b = b[:limit-n]
		}
		k, err := f.Read(b)
		h.Write(b[:k])
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// runPhase runs one phase with b.cfg.workers reader processes over root and
// returns what they read and the wall time from "go" to the last result.
func (b *bench) runPhase(ctx context.Context, phase, root string) (sums, time.Duration, error) {
	n := b.cfg.workers
	g, gctx := errgroup.WithContext(ctx)
	ready := make(chan struct{}, n)
	start := make(chan struct{})
	results := make([]sums, n)
	for i := range n {
		cmd := exec.CommandContext(gctx, b.exe, "worker", "--root", root, "--phase", phase,
			"--list", b.lists[phase], "--index", strconv.Itoa(i), "--of", strconv.Itoa(n))
		cmd.Dir = "/" // a worker must not pin a mount it reads
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return sums{}, 0, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return sums{}, 0, err
		}
		g.Go(func() error {
			if err := cmd.Start(); err != nil {
				return err
			}
			out := bufio.NewScanner(stdout)
			fail := func(what string) error {
				stdin.Close()
				werr := cmd.Wait()
				return fmt.Errorf("worker %d %s (%v): %s", i, what, werr, strings.TrimSpace(stderr.String()))
			}
			if !out.Scan() || out.Text() != "ready" {
				return fail("did not start")
			}
			ready <- struct{}{}
			select {
			case <-start:
			case <-gctx.Done():
				return fail("cancelled")
			}
			io.WriteString(stdin, "go\n")
			if !out.Scan() || json.Unmarshal(out.Bytes(), &results[i]) != nil {
				return fail("failed")
			}
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("worker %d: %v: %s", i, err, strings.TrimSpace(stderr.String()))
			}
			return nil
		})
	}
	for range n {
		select {
		case <-ready:
		case <-gctx.Done():
			return sums{}, 0, g.Wait()
		}
	}
	t0 := time.Now()
	close(start)
	if err := g.Wait(); err != nil {
		return sums{}, 0, err
	}
	d := time.Since(t0)
	var total sums
	for _, r := range results {
		total.add(r)
	}
	if ctx.Err() != nil {
		return total, d, errors.New("interrupted")
	}
	return total, d, nil
}
