package blockcache

import (
	"encoding/binary"
	"hash/crc32"
)

// logMagic starts every presence log; the digits are the format version.
const logMagic = "CFSBLK03"

// logHeader names what a presence log describes: the source file (block
// size and the Key's identity) and the one data file its records are
// about. A data file deleted and made anew, or replaced by a copy, has
// another identity, so records of its predecessor never describe it.
type logHeader struct {
	blockSize int64
	size      int64
	mtime     int64
	ino       uint64
	data      fileID
}

// fileID identifies a data file on the cache disk: inode and birth time
// (zero where the filesystem keeps none), so a reused inode number is
// another file too.
type fileID struct {
	ino   uint64
	birth int64
}

const headerSize = len(logMagic) + 6*8

func (h logHeader) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, logMagic)
	le := binary.LittleEndian
	o := len(logMagic)
	for _, v := range []uint64{uint64(h.blockSize), uint64(h.size), uint64(h.mtime), h.ino, h.data.ino, uint64(h.data.birth)} {
		le.PutUint64(b[o:], v)
		o += 8
	}
	return b
}

// nblocks is the number of blocks of the file the header describes; zero
// for a header that describes nothing sensible.
func (h logHeader) nblocks() int64 {
	if h.blockSize <= 0 || h.size < 0 {
		return 0
	}
	n := h.size / h.blockSize
	if h.size%h.blockSize != 0 {
		n++
	}
	return n
}

// parsePresence decodes a presence log: its header, then each record in
// order through fn. It stops at the first torn or garbage record (a crash
// mid-append leaves one at the tail; everything after it is ignored) and
// at any record of a block the file does not have. ok is false when raw
// has no valid header.
func parsePresence(raw []byte, fn func(b int64, sum uint32)) (h logHeader, ok bool) {
	h, _, ok = parsePresenceLen(raw, fn)
	return h, ok
}

// parsePresenceLen is parsePresence that also returns how many bytes of
// raw are the header and the whole records it accepted: a log is cut back
// to that before anything is appended to it, or the records appended after
// a torn one would be read as misaligned garbage and lost too.
func parsePresenceLen(raw []byte, fn func(b int64, sum uint32)) (h logHeader, valid int, ok bool) {
	if len(raw) < headerSize || string(raw[:len(logMagic)]) != logMagic {
		return h, 0, false
	}
	le := binary.LittleEndian
	o := len(logMagic)
	next := func() uint64 { v := le.Uint64(raw[o:]); o += 8; return v }
	h.blockSize, h.size, h.mtime = int64(next()), int64(next()), int64(next())
	h.ino = next()
	h.data = fileID{ino: next(), birth: int64(next())}
	n := h.nblocks()
	if n == 0 && h.size != 0 {
		return h, 0, false
	}
	valid = headerSize
	for r := raw[headerSize:]; len(r) >= recordSize; r = r[recordSize:] {
		b, sum, ok := decodeRecord(r)
		if !ok || int64(b) >= n {
			break
		}
		fn(int64(b), sum)
		valid += recordSize
	}
	return h, valid, true
}

// A presence record: block index, CRC-32C of the block's bytes, and a
// checksum of both, so garbage is never mistaken for a record.
const recordSize = 12

func encodeRecord(b, sum uint32) []byte {
	var r [recordSize]byte
	binary.LittleEndian.PutUint32(r[:4], b)
	binary.LittleEndian.PutUint32(r[4:8], sum)
	binary.LittleEndian.PutUint32(r[8:], crc32.Checksum(r[:8], castagnoli))
	return r[:]
}

// decodeRecord returns a record's block and data checksum, or ok false for
// a torn or garbage record.
func decodeRecord(r []byte) (b, sum uint32, ok bool) {
	if binary.LittleEndian.Uint32(r[8:12]) != crc32.Checksum(r[:8], castagnoli) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint32(r[:4]), binary.LittleEndian.Uint32(r[4:8]), true
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockSum(data []byte) uint32 { return crc32.Checksum(data, castagnoli) }
