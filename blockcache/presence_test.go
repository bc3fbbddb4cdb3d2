package blockcache

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// FuzzPresenceLog feeds the presence-log parser arbitrary bytes: it must
// never panic, and never report a record of a block past the end of the
// file its header describes.
func FuzzPresenceLog(f *testing.F) {
	h := logHeader{blockSize: 4096, size: 4096*3 + 10, mtime: 7, ino: 1, data: fileID{ino: 12, birth: 34}}
	valid := append(h.encode(), encodeRecord(0, 1)...)
	valid = append(valid, encodeRecord(3, 2)...)
	f.Add(valid)
	f.Add(append(bytes.Clone(valid), 1, 2, 3))
	f.Add(append(h.encode(), encodeRecord(4, 9)...)) // past the end
	f.Add(h.encode()[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var seen []int64
		hdr, ok := parsePresence(raw, func(b int64, _ uint32) { seen = append(seen, b) })
		if !ok {
			if len(seen) != 0 {
				t.Fatalf("records reported from a log refused: %v", seen)
			}
			return
		}
		n := hdr.nblocks()
		for _, b := range seen {
			if b < 0 || b >= n {
				t.Fatalf("block %d accepted for a file of %d bytes in blocks of %d", b, hdr.size, hdr.blockSize)
			}
		}
		if hdr.size == 0 && len(seen) != 0 {
			t.Fatalf("records accepted for an empty file: %v", seen)
		}
	})
}

// TestPresenceLogStopsAtBlocksPastTheEnd: a record of a block the file
// does not have ends the log, like a torn record.
func TestPresenceLogStopsAtBlocksPastTheEnd(t *testing.T) {
	h := logHeader{blockSize: 4096, size: 4096 * 2, data: fileID{ino: 3}}
	raw := append(h.encode(), encodeRecord(1, 5)...)
	raw = append(raw, encodeRecord(2, 5)...)
	raw = append(raw, encodeRecord(0, 5)...)
	var seen []int64
	got, ok := parsePresence(raw, func(b int64, _ uint32) { seen = append(seen, b) })
	if !ok || got != h || len(seen) != 1 || seen[0] != 1 {
		t.Fatalf("parse: %+v %v %v", got, ok, seen)
	}
}

// TestBadPresenceHeaderStartsOver: a presence log whose header is damaged
// (magic, block size, size) records nothing; the file's blocks are
// fetched again, never served from the data file it described.
func TestBadPresenceHeaderStartsOver(t *testing.T) {
	for _, c := range []struct {
		name string
		at   int
	}{{"magic", 0}, {"block size", len(logMagic)}, {"size", len(logMagic) + 8}} {
		t.Run(c.name, func(t *testing.T) {
			src, dir, data := restartFixture(t)
			log := strings.TrimSuffix(data, ".data") + ".present"
			raw, err := os.ReadFile(log)
			if err != nil {
				t.Fatal(err)
			}
			raw[c.at] ^= 0x41
			if err := os.WriteFile(log, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			src.bytes.Store(0)
			cache := open(t, dir, src, Options{ReadAhead: -1})
			defer cache.Close()
			readAllOf(t, cache, src).Close()
			if got := src.bytes.Load(); got != 4096*4 {
				t.Errorf("fetched %d bytes after the header was damaged, want the whole file again (%d)", got, 4096*4)
			}
		})
	}
}
