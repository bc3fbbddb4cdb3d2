package blockcache

import (
	"bytes"
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
