package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sync/errgroup"
)

// dataParams fixes the dataset: the tree is a pure function of these values,
// so a marker holding equal params proves a generated tree can be reused.
type dataParams struct {
	Layout     int    `json:"layout"` // bump when layout or content changes
	Datasets   int    `json:"datasets"`
	Subjects   int    `json:"subjects"`
	Runs       int    `json:"runs"`
	RecMinKiB  int    `json:"recording_min_kib"`
	RecMaxKiB  int    `json:"recording_max_kib"`
	SmallFiles int    `json:"small_files"`
	SmallSize  int    `json:"small_size"`
	Seed       uint64 `json:"seed"`
}

const layoutVersion = 1

type entry struct {
	rel string // slash-separated, "." for the root
	dir bool
}

// dataStats summarises a generated tree for the report header.
type dataStats struct {
	Entries        int   `json:"entries"`
	Recordings     int   `json:"recordings"`
	RecordingBytes int64 `json:"recording_bytes"`
	Sidecars       int   `json:"sidecars"`
	SidecarBytes   int64 `json:"sidecar_bytes"`
	SmallFiles     int   `json:"small_files"`
	SmallBytes     int64 `json:"small_bytes"`
}

// layout lists the tree parents first, so creating entries in this order
// never needs MkdirAll.
func layout(p dataParams) []entry {
	es := []entry{{".", true}}
	for d := 1; d <= p.Datasets; d++ {
		ds := fmt.Sprintf("ds%06d", d)
		es = append(es, entry{ds, true},
			entry{ds + "/dataset_description.json", false},
			entry{ds + "/participants.tsv", false})
		for s := 1; s <= p.Subjects; s++ {
			sub := fmt.Sprintf("sub-%03d", s)
			dir := ds + "/" + sub + "/eeg"
			es = append(es, entry{ds + "/" + sub, true}, entry{dir, true})
			for r := 1; r <= p.Runs; r++ {
				pre := fmt.Sprintf("%s/%s_task-rest_run-%02d", dir, sub, r)
				for _, suf := range []string{"_eeg.bdf", "_eeg.json", "_channels.tsv", "_events.tsv"} {
					es = append(es, entry{pre + suf, false})
				}
			}
		}
	}
	es = append(es, entry{"images", true})
	for i := 0; i < p.SmallFiles; i++ {
		es = append(es, entry{fmt.Sprintf("images/img_%06d.png", i), false})
	}
	return es
}

func isRecording(rel string) bool { return strings.HasSuffix(rel, "_eeg.bdf") }
func isSidecar(rel string) bool {
	return strings.HasSuffix(rel, ".json") || strings.HasSuffix(rel, ".tsv")
}
func isSmall(rel string) bool { return strings.HasPrefix(rel, "images/") }

// fileRand gives each file its own stream, so a file's bytes do not depend
// on which other files exist or the order they are written in.
func fileRand(p dataParams, rel string) (*rand.ChaCha8, *rand.Rand) {
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], p.Seed)
	key := sha256.Sum256(append(seed[:], rel...))
	c := rand.NewChaCha8(key)
	return c, rand.New(c)
}

func content(p dataParams, rel string) []byte {
	c, r := fileRand(p, rel)
	random := func(n int) []byte {
		b := make([]byte, n)
		_, _ = c.Read(b)
		return b
	}
	var sb strings.Builder
	switch {
	case isRecording(rel):
		lo, hi := p.RecMinKiB<<10, p.RecMaxKiB<<10
		// Sizes are not block-aligned so tails take the short-read paths.
		return random(lo + r.IntN(hi-lo+1))
	case isSmall(rel):
		return random(p.SmallSize)
	case strings.HasSuffix(rel, "dataset_description.json"):
		fmt.Fprintf(&sb, `{"Name": "synthetic resting-state EEG %s", "BIDSVersion": "1.8.0", "DatasetType": "raw"}`+"\n", filepath.Dir(rel))
	case strings.HasSuffix(rel, "participants.tsv"):
		sb.WriteString("participant_id\tage\tsex\n")
		for s := 1; s <= p.Subjects; s++ {
			fmt.Fprintf(&sb, "sub-%03d\t%d\t%c\n", s, 18+r.IntN(60), "MF"[r.IntN(2)])
		}
	case strings.HasSuffix(rel, "_eeg.json"):
		fmt.Fprintf(&sb, `{"TaskName": "rest", "SamplingFrequency": %d, "EEGChannelCount": 64, "EEGReference": "CMS/DRL", "RecordingDuration": %.3f, "PowerLineFrequency": 50}`+"\n",
			[]int{256, 512, 1024}[r.IntN(3)], 60+r.Float64()*240)
	case strings.HasSuffix(rel, "_channels.tsv"):
		sb.WriteString("name\ttype\tunits\tstatus\n")
		for ch := 1; ch <= 64; ch++ {
			fmt.Fprintf(&sb, "E%03d\tEEG\tuV\t%s\n", ch, []string{"good", "good", "good", "bad"}[r.IntN(4)])
		}
	case strings.HasSuffix(rel, "_events.tsv"):
		sb.WriteString("onset\tduration\ttrial_type\n")
		t := 0.0
		for range 10 + r.IntN(50) {
			t += r.Float64() * 5
			fmt.Fprintf(&sb, "%.3f\t%.3f\t%s\n", t, r.Float64(), []string{"eyes_open", "eyes_closed", "blink"}[r.IntN(3)])
		}
	default:
		panic("bench: no content rule for " + rel)
	}
	return []byte(sb.String())
}

// ensureDataset returns the dataset directory for p under workdir,
// generating it unless a complete one is already there. The marker is
// written last, so an interrupted generation is redone.
func ensureDataset(ctx context.Context, workdir string, p dataParams) (string, dataStats, error) {
	pj, _ := json.Marshal(p)
	h := sha256.Sum256(pj)
	dir := filepath.Join(workdir, "data-"+hex.EncodeToString(h[:6]))
	marker := dir + ".json"
	es := layout(p)
	if old, err := os.ReadFile(marker); err == nil && string(old) == string(pj) {
		if st, err := statDataset(dir, es); err == nil {
			progress("dataset: reusing %s", dir)
			return dir, st, nil
		}
		progress("dataset: %s is incomplete; regenerating", dir)
	}
	progress("dataset: generating %d entries in %s", len(es), dir)
	_ = os.Remove(marker)
	if err := os.RemoveAll(dir); err != nil {
		return "", dataStats{}, err
	}
	for _, e := range es {
		if e.dir {
			if err := os.Mkdir(filepath.Join(dir, e.rel), 0o755); err != nil {
				return "", dataStats{}, err
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.NumCPU())
	for _, e := range es {
		if !e.dir {
			g.Go(func() error {
				if gctx.Err() != nil {
					return gctx.Err()
				}
				return os.WriteFile(filepath.Join(dir, e.rel), content(p, e.rel), 0o644)
			})
		}
	}
	if err := g.Wait(); err != nil {
		return "", dataStats{}, err
	}
	st, err := statDataset(dir, es)
	if err != nil {
		return "", dataStats{}, err
	}
	return dir, st, os.WriteFile(marker, pj, 0o644)
}

// statDataset checks that every entry exists with its kind and sums sizes.
func statDataset(dir string, es []entry) (dataStats, error) {
	st := dataStats{Entries: len(es)}
	for _, e := range es {
		fi, err := os.Lstat(filepath.Join(dir, e.rel))
		if err != nil {
			return st, err
		}
		if fi.IsDir() != e.dir {
			return st, errors.New(e.rel + ": wrong kind")
		}
		switch {
		case isRecording(e.rel):
			st.Recordings++
			st.RecordingBytes += fi.Size()
		case isSmall(e.rel):
			st.SmallFiles++
			st.SmallBytes += fi.Size()
		case !e.dir:
			st.Sidecars++
			st.SidecarBytes += fi.Size()
		}
	}
	return st, nil
}

// writeLists writes one work list per phase. Shuffles are seeded per phase,
// so every setup reads in the same order and epoch2 differs from epoch1 the
// way a dataloader's next epoch does.
func writeLists(dir string, p dataParams) (map[string]string, error) {
	var all, recs, small []string
	for _, e := range layout(p) {
		all = append(all, e.rel)
		if isRecording(e.rel) {
			recs = append(recs, e.rel)
		} else if isSmall(e.rel) {
			small = append(small, e.rel)
		}
	}
	shuffled := func(xs []string, stream uint64) []string {
		out := append([]string(nil), xs...)
		r := rand.New(rand.NewPCG(p.Seed, stream))
		r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	lists := map[string][]string{
		"scan":   all,
		"peek":   shuffled(recs, 1),
		"epoch1": shuffled(recs, 2),
		"epoch2": shuffled(recs, 3),
		"small":  shuffled(small, 4),
	}
	files := map[string]string{}
	for ph, xs := range lists {
		f := filepath.Join(dir, ph+".list")
		if err := os.WriteFile(f, []byte(strings.Join(xs, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		files[ph] = f
	}
	return files, nil
}
