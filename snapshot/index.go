package snapshot

// Snapshot index files: a Snapshot written to one file so that many nodes
// can load it instead of each walking the source.
//
// # Format (version 2)
//
// Everything is little-endian. The file is meant to be read with one large
// sequential read and loaded without parsing per entry.
//
//	preamble, 32 bytes, the same in every format version:
//	  [0:8)    magic "CFSINDEX"
//	  [8:12)   format version (uint32)
//	  [12:16)  header length H (uint32)
//	  [16:24)  total file length, trailer included (uint64)
//	  [24:32)  reserved, zero
//	header, H bytes (a multiple of 8):
//	  walk start (int64 ns since the epoch), walk duration (int64 ns),
//	  root inode, root device (uint64), root mtime, root ctime (int64 ns),
//	  the seven Stats counters (int64), then the element counts of the
//	  sections: entries, name bytes, owners, links, target bytes, rdevs,
//	  ACL column (0 or entries), ACL pairs, ACL offsets, ACL bytes
//	  (uint64), flags (uint64; bit 0: the walk recorded ACLs, and an
//	  index without it holds none), then source length and host length (uint32), then the
//	  source path and host name bytes, zero-padded to 8
//	sections, in a fixed order, each:
//	  id (uint32), element size (uint32), element count (uint64), the raw
//	  array, zero-padded to 8
//	trailer, 8 bytes, the same in every format version:
//	  CRC-32C (Castagnoli) of every byte before the trailer (uint32), zero
//
// Sections are names, nameOff, kids, mode, owner, nlink, size, mtime, ctime,
// atime, ino, owners, links, targets, rdevs, acl, aclSets, aclOff, aclData
// (version 2 added the last four): the Snapshot's own arrays, so
// writing is a copy of memory and loading is either a copy into exactly
// sized slices or, on little-endian machines, slices that alias the buffer
// the file was read into (every array starts 8-aligned in the file and the
// buffer is 8-aligned in memory).
//
// # Checks on load, in this order
//
// Empty file; shorter than preamble plus trailer (truncated); wrong magic
// (not an index); recorded length differs from the file's (truncated or
// grown); CRC mismatch (corrupt); unknown version. Only then is the header
// parsed, and every section's id, size and count is checked against it, and
// the arrays are checked for what lookups rely on (offsets in range and
// non-decreasing, only directories owning children, side tables sorted), so
// that no index, however made, can make a later lookup index out of range.
// Then the entries themselves (validate.go): names that are single path
// components, sorted siblings, no loops of inode numbers, clean symlinks.
// A file that fails any check is refused whole; nothing is half-loaded.
//
// The checksum is verified before the version is read, so a flipped bit
// anywhere, the version field included, reads as "corrupt". A file written
// by another format version has a valid checksum and reads as "version".

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unsafe"
)

// IndexVersion is the format version this package writes and reads.
const IndexVersion = 2

const (
	indexMagic    = "CFSINDEX"
	preambleSize  = 32
	trailerSize   = 8
	sectionHdrLen = 16
	headerFixed   = 8 * (6 + 7 + 10 + 1) // int64/uint64 fields before the two string lengths
)

// Header flags.
const (
	flagACLs   = 1 << iota // the walk recorded every entry's ACLs
	knownFlags = flagACLs
)

// Errors of ReadIndex and DecodeIndex; each is wrapped with the file and the
// detail.
var (
	ErrIndexEmpty     = errors.New("empty file")
	ErrIndexTruncated = errors.New("truncated")
	ErrIndexNotIndex  = errors.New("not a cachefs snapshot index")
	ErrIndexCorrupt   = errors.New("corrupt")
	ErrIndexVersion   = errors.New("unsupported format version")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// IndexInfo is what an index records about the walk that made it.
type IndexInfo struct {
	Version      uint32
	Source       string        // absolute path walked
	Host         string        // host that walked it
	WalkStart    time.Time     // when the walk began: changes after this may be missing
	WalkDuration time.Duration // how long it took
	RootIno      uint64        // the source root's inode number
	RootDev      uint64        // the source root's st_dev on the walking host
	RootMtime    int64         // the source root's mtime, ns
	RootCtime    int64         // the source root's ctime, ns
	Stats        Stats         // Stats.Errors is the walker's error count
	// ACLs reports that the walk recorded POSIX ACLs; only such an index
	// may serve a mount other users can reach.
	ACLs bool
	Size int64 // bytes of the index file (set by WriteIndex and ReadIndex)
}

// Age is how long ago, relative to now, the walk began; never negative.
func (i IndexInfo) Age(now time.Time) time.Duration {
	return max(now.Sub(i.WalkStart), 0)
}

// little reports whether this machine stores integers little-endian, the
// file's order, so arrays can be written and aliased as they are in memory.
var little = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// section ids, in file order.
const (
	secNames = iota + 1
	secNameOff
	secKids
	secMode
	secOwner
	secNlink
	secSize
	secMtime
	secCtime
	secAtime
	secIno
	secOwners
	secLinks
	secTargets
	secRdevs
	secACL
	secACLSets
	secACLOff
	secACLData
	numSections = secACLData
)

var sectionNames = [...]string{"", "names", "nameOff", "kids", "mode", "owner", "nlink", "size", "mtime", "ctime", "atime", "ino", "owners", "links", "targets", "rdevs", "acl", "aclSets", "aclOff", "aclData"}

// elemSize of each section's array element in the file.
var elemSize = [...]uint32{0, 1, 4, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 12, 1, 16, 4, 8, 4, 1}

func pad8(n int) int { return (n + 7) &^ 7 }

// WriteIndex writes s and info to path atomically: to a temporary file in
// the same directory, synced, then renamed over path, so a reader sees the
// old file or the whole new one, never a part. The root identity and
// statistics are taken from s; info supplies Source, Host, WalkStart,
// WalkDuration and RootDev. It returns the index as written (Size set).
func WriteIndex(path string, s *Snapshot, info IndexInfo) (IndexInfo, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	var f *os.File
	var tmp string
	var err error
	for try := 0; ; try++ {
		tmp = filepath.Join(dir, "."+base+".tmp-"+strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano()%1e9, 36))
		f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil || !errors.Is(err, os.ErrExist) || try >= 10 {
			break
		}
	}
	if err != nil {
		return info, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close() // the write's error is the one to report
			_ = os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	info, err = EncodeIndex(bw, s, info)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return info, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	ok = true
	// Make the rename itself durable; failing to is not worth an error.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return info, nil
}

// crcWriter passes writes through, checksumming and counting them.
type crcWriter struct {
	w   io.Writer
	crc uint32
	n   int64
	err error
}

func (c *crcWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	c.n += int64(n)
	c.err = err
	return n, err
}

var zeros [8]byte

// EncodeIndex writes the index of s to w. See WriteIndex for info.
func EncodeIndex(w io.Writer, s *Snapshot, info IndexInfo) (IndexInfo, error) {
	info.Version = IndexVersion
	info.RootIno = s.ino[0]
	info.RootMtime = s.mtime[0]
	info.RootCtime = s.ctime[0]
	info.Stats = s.stats
	info.ACLs = s.aclsRecorded

	hdr := encodeHeader(s, info)
	total := int64(preambleSize + len(hdr) + trailerSize)
	counts := sectionCounts(s)
	for id := 1; id <= numSections; id++ {
		total += sectionHdrLen + int64(pad8(int(counts[id]*uint64(elemSize[id]))))
	}
	info.Size = total

	cw := &crcWriter{w: w}
	var pre [preambleSize]byte
	copy(pre[:8], indexMagic)
	binary.LittleEndian.PutUint32(pre[8:], IndexVersion)
	binary.LittleEndian.PutUint32(pre[12:], uint32(len(hdr)))
	binary.LittleEndian.PutUint64(pre[16:], uint64(total))
	cw.add(pre[:])
	cw.add(hdr)
	raw := sectionBytes(s)
	for id := 1; id <= numSections; id++ {
		cw.section(id, counts[id], raw[id])
	}
	if cw.err != nil {
		return info, cw.err
	}
	var tr [trailerSize]byte
	binary.LittleEndian.PutUint32(tr[:], cw.crc)
	if _, err := w.Write(tr[:]); err != nil {
		return info, err
	}
	if cw.n+trailerSize != total {
		panic(fmt.Sprintf("snapshot index: wrote %d bytes, planned %d", cw.n+trailerSize, total))
	}
	return info, nil
}

// add writes p; the first error stays in c.err and stops later writes.
func (c *crcWriter) add(p []byte) { _, _ = c.Write(p) }

// section writes one section: its header, raw, and padding to 8 bytes.
func (c *crcWriter) section(id int, count uint64, raw []byte) {
	var sh [sectionHdrLen]byte
	binary.LittleEndian.PutUint32(sh[0:], uint32(id))
	binary.LittleEndian.PutUint32(sh[4:], elemSize[id])
	binary.LittleEndian.PutUint64(sh[8:], count)
	c.add(sh[:])
	if uint64(len(raw)) != count*uint64(elemSize[id]) {
		panic(fmt.Sprintf("snapshot index: section %s has %d bytes, want %d", sectionNames[id], len(raw), count*uint64(elemSize[id])))
	}
	c.add(raw)
	c.add(zeros[:pad8(len(raw))-len(raw)])
}

// sectionBytes lays out each section of s as the file stores it.
func sectionBytes(s *Snapshot) (raw [numSections + 1][]byte) {
	le := binary.LittleEndian
	raw[secNames], raw[secTargets], raw[secACLData] = s.names, s.targets, s.aclData
	raw[secNameOff], raw[secKids], raw[secMode] = u32Bytes(s.nameOff), u32Bytes(s.kids), u32Bytes(s.mode)
	raw[secOwner], raw[secNlink] = u32Bytes(s.owner), u32Bytes(s.nlink)
	raw[secSize], raw[secMtime], raw[secCtime], raw[secAtime] = i64Bytes(s.size), i64Bytes(s.mtime), i64Bytes(s.ctime), i64Bytes(s.atime)
	raw[secIno], raw[secACL], raw[secACLOff] = u64Bytes(s.ino), u32Bytes(s.acl), u32Bytes(s.aclOff)
	owners := make([]byte, 0, 8*len(s.owners))
	for _, o := range s.owners {
		owners = le.AppendUint32(le.AppendUint32(owners, o.Uid), o.Gid)
	}
	links := make([]byte, 0, 12*len(s.links))
	for _, l := range s.links {
		links = le.AppendUint32(le.AppendUint32(le.AppendUint32(links, l.Idx), l.Off), l.Len)
	}
	rdevs := make([]byte, 0, 16*len(s.rdevs))
	for _, r := range s.rdevs {
		rdevs = le.AppendUint64(le.AppendUint32(le.AppendUint32(rdevs, r.Idx), 0), r.Rdev)
	}
	sets := make([]byte, 0, 8*len(s.aclSets))
	for _, p := range s.aclSets {
		sets = le.AppendUint32(le.AppendUint32(sets, p.Access), p.Default)
	}
	raw[secOwners], raw[secLinks], raw[secRdevs], raw[secACLSets] = owners, links, rdevs, sets
	return raw
}

func sectionCounts(s *Snapshot) [numSections + 1]uint64 {
	n := uint64(s.Len())
	return [numSections + 1]uint64{
		secNames: uint64(len(s.names)), secNameOff: n + 1, secKids: n + 1,
		secMode: n, secOwner: n, secNlink: n, secSize: n, secMtime: n, secCtime: n, secAtime: n, secIno: n,
		secOwners: uint64(len(s.owners)), secLinks: uint64(len(s.links)),
		secTargets: uint64(len(s.targets)), secRdevs: uint64(len(s.rdevs)),
		secACL: uint64(len(s.acl)), secACLSets: uint64(len(s.aclSets)),
		secACLOff: uint64(len(s.aclOff)), secACLData: uint64(len(s.aclData)),
	}
}

func encodeHeader(s *Snapshot, info IndexInfo) []byte {
	h := make([]byte, 0, pad8(headerFixed+8+len(info.Source)+len(info.Host)))
	le := binary.LittleEndian
	var start int64
	if !info.WalkStart.IsZero() {
		start = info.WalkStart.UnixNano()
	}
	h = le.AppendUint64(h, uint64(start))
	h = le.AppendUint64(h, uint64(info.WalkDuration))
	h = le.AppendUint64(h, info.RootIno)
	h = le.AppendUint64(h, info.RootDev)
	h = le.AppendUint64(h, uint64(info.RootMtime))
	h = le.AppendUint64(h, uint64(info.RootCtime))
	st := info.Stats
	for _, v := range []int64{st.Entries, st.Dirs, st.Files, st.Symlinks, st.Other, st.Bytes, st.Errors} {
		h = le.AppendUint64(h, uint64(v))
	}
	c := sectionCounts(s)
	for _, id := range []int{secMode, secNames, secOwners, secLinks, secTargets, secRdevs, secACL, secACLSets, secACLOff, secACLData} {
		h = le.AppendUint64(h, c[id])
	}
	var flags uint64
	if info.ACLs {
		flags |= flagACLs
	}
	h = le.AppendUint64(h, flags)
	h = le.AppendUint32(h, uint32(len(info.Source)))
	h = le.AppendUint32(h, uint32(len(info.Host)))
	h = append(h, info.Source...)
	h = append(h, info.Host...)
	return append(h, zeros[:pad8(len(h))-len(h)]...)
}

// ReadIndex loads the index at path with one sequential read. Every check
// listed in the package's index comment passes before anything is returned.
func ReadIndex(path string) (*Snapshot, IndexInfo, error) {
	return readIndex(path, little)
}

func readIndex(path string, alias bool) (*Snapshot, IndexInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: not a regular file", path)
	}
	size := fi.Size()
	if size > math.MaxInt-8 {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: %d bytes is too large", path, size)
	}
	// Read into 8-aligned memory, one byte more than stat said so that a
	// file still growing is noticed rather than cut.
	words := make([]uint64, (size+1+7)/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), len(words)*8)[:size+1]
	got, err := io.ReadFull(f, buf)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	if got > int(size) {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: the file grew while being read; is it being written in place?", path)
	}
	s, info, err := decodeIndex(buf[:got:got], alias)
	if err != nil {
		return nil, IndexInfo{}, fmt.Errorf("snapshot index %s: %w", path, err)
	}
	return s, info, nil
}

// DecodeIndex loads an index from data. On little-endian machines the
// Snapshot's arrays alias data when it is 8-aligned, so data must not be
// modified afterwards.
func DecodeIndex(data []byte) (*Snapshot, IndexInfo, error) {
	return decodeIndex(data, little && uintptr(unsafe.Pointer(unsafe.SliceData(data)))%8 == 0)
}

func decodeIndex(data []byte, alias bool) (*Snapshot, IndexInfo, error) {
	info, body, err := checkEnvelope(data)
	if err != nil {
		return nil, info, err
	}
	// From here on the bytes are what a writer wrote; the checks below
	// guard against a writer's bug or a crafted file, never against
	// corruption.
	hlen, counts, err := decodeHeader(data, body, &info)
	if err != nil {
		return nil, IndexInfo{}, err
	}
	raw, err := splitSections(body, preambleSize+hlen, &counts)
	if err != nil {
		return nil, IndexInfo{}, err
	}
	s := assemble(&raw, info, alias)
	if err := s.validate(); err != nil {
		return nil, IndexInfo{}, corrupt("%v", err)
	}
	if err := s.validateACL(); err != nil {
		return nil, IndexInfo{}, corrupt("%v", err)
	}
	if err := s.validateEntries(); err != nil {
		return nil, IndexInfo{}, err
	}
	return s, info, nil
}

// corrupt is ErrIndexCorrupt with what is wrong.
func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrIndexCorrupt, fmt.Sprintf(format, args...))
}

// checkEnvelope checks what corruption or truncation would break: the
// magic, the length, the checksum and the version.
func checkEnvelope(data []byte) (info IndexInfo, body []byte, err error) {
	le := binary.LittleEndian
	size := len(data)
	switch {
	case size == 0:
		return info, nil, ErrIndexEmpty
	case size < len(indexMagic) && string(data) == indexMagic[:size],
		size >= len(indexMagic) && size < preambleSize+trailerSize && string(data[:8]) == indexMagic:
		return info, nil, fmt.Errorf("%w: %d bytes, shorter than any index", ErrIndexTruncated, size)
	case size < len(indexMagic) || string(data[:8]) != indexMagic:
		return info, nil, fmt.Errorf("%w (its first bytes are %q, not %q)", ErrIndexNotIndex, data[:min(size, 8)], indexMagic)
	}
	if want := le.Uint64(data[16:]); want != uint64(size) {
		if want > uint64(size) {
			return info, nil, fmt.Errorf("%w: %d bytes, its header records %d (an interrupted copy?)", ErrIndexTruncated, size, want)
		}
		return info, nil, fmt.Errorf("%w: %d bytes, its header records %d", ErrIndexCorrupt, size, want)
	}
	body = data[:size-trailerSize]
	if got, want := crc32.Checksum(body, castagnoli), le.Uint32(data[size-trailerSize:]); got != want {
		return info, nil, fmt.Errorf("%w: checksum mismatch (CRC-32C %08x, recorded %08x)", ErrIndexCorrupt, got, want)
	}
	if le.Uint32(data[size-4:]) != 0 {
		return info, nil, fmt.Errorf("%w: trailer's reserved bytes are not zero", ErrIndexCorrupt)
	}
	info.Version = le.Uint32(data[8:])
	if info.Version != IndexVersion {
		return info, nil, fmt.Errorf("%w %d: this cachefs reads version %d", ErrIndexVersion, info.Version, IndexVersion)
	}
	info.Size = int64(size)
	return info, body, nil
}

// decodeHeader fills info from the header and returns the header's length
// and the element count each section must have.
func decodeHeader(data, body []byte, info *IndexInfo) (hlen int, counts [numSections + 1]uint64, err error) {
	le := binary.LittleEndian
	hlen = int(le.Uint32(data[12:]))
	if hlen%8 != 0 || hlen < headerFixed+8 || preambleSize+hlen > len(body) {
		return 0, counts, corrupt("header length %d", hlen)
	}
	h := data[preambleSize : preambleSize+hlen]
	u := func(k int) uint64 { return le.Uint64(h[8*k:]) }
	if u(0) != 0 {
		info.WalkStart = time.Unix(0, int64(u(0)))
	}
	info.WalkDuration = time.Duration(u(1))
	info.RootIno, info.RootDev = u(2), u(3)
	info.RootMtime, info.RootCtime = int64(u(4)), int64(u(5))
	st := &info.Stats
	for k, p := range []*int64{&st.Entries, &st.Dirs, &st.Files, &st.Symlinks, &st.Other, &st.Bytes, &st.Errors} {
		*p = int64(u(6 + k))
	}
	n := u(13)
	if n == 0 || n >= math.MaxUint32 || int64(n) != st.Entries {
		return 0, counts, corrupt("%d entries, statistics say %d", n, st.Entries)
	}
	counts[secNameOff], counts[secKids] = n+1, n+1
	for _, id := range []int{secMode, secOwner, secNlink, secSize, secMtime, secCtime, secAtime, secIno} {
		counts[id] = n
	}
	counts[secNames], counts[secOwners], counts[secLinks], counts[secTargets], counts[secRdevs] = u(14), u(15), u(16), u(17), u(18)
	counts[secACL], counts[secACLSets], counts[secACLOff], counts[secACLData] = u(19), u(20), u(21), u(22)
	flags := u(23)
	if flags&^knownFlags != 0 {
		return 0, counts, corrupt("unknown header flags %#x", flags)
	}
	info.ACLs = flags&flagACLs != 0
	slen, hostLen := int(le.Uint32(h[headerFixed:])), int(le.Uint32(h[headerFixed+4:]))
	if headerFixed+8+slen+hostLen > hlen {
		return 0, counts, corrupt("source and host names overrun the header")
	}
	info.Source = string(h[headerFixed+8 : headerFixed+8+slen])
	info.Host = string(h[headerFixed+8+slen : headerFixed+8+slen+hostLen])
	return hlen, counts, nil
}

// splitSections cuts the sections out of body from off, each checked to
// have its place, element size and count.
func splitSections(body []byte, off int, counts *[numSections + 1]uint64) (raw [numSections + 1][]byte, err error) {
	le := binary.LittleEndian
	for id := 1; id <= numSections; id++ {
		if off+sectionHdrLen > len(body) {
			return raw, corrupt("section %s missing", sectionNames[id])
		}
		sh := body[off : off+sectionHdrLen]
		gid, gsize, gcount := le.Uint32(sh), le.Uint32(sh[4:]), le.Uint64(sh[8:])
		if gid != uint32(id) || gsize != elemSize[id] || gcount != counts[id] {
			return raw, corrupt("section %d (size %d, count %d) where %s (size %d, count %d) belongs", gid, gsize, gcount, sectionNames[id], elemSize[id], counts[id])
		}
		off += sectionHdrLen
		if gcount > uint64(len(body)) {
			return raw, corrupt("section %s overruns the file", sectionNames[id])
		}
		nb := int(gcount) * int(gsize)
		if off+pad8(nb) > len(body) {
			return raw, corrupt("section %s overruns the file", sectionNames[id])
		}
		raw[id] = body[off : off+nb : off+nb]
		off += pad8(nb)
	}
	if off != len(body) {
		return raw, corrupt("%d bytes after the last section", len(body)-off)
	}
	return raw, nil
}

// assemble builds the snapshot on the sections, aliasing them when alias
// is set and copying them otherwise.
func assemble(raw *[numSections + 1][]byte, info IndexInfo, alias bool) *Snapshot {
	s := &Snapshot{stats: info.Stats, aclsRecorded: info.ACLs}
	if alias {
		// The arrays point into data; it stays alive as long as they do.
		s.names = raw[secNames]
		s.targets = raw[secTargets]
		s.aclData = raw[secACLData]
	} else {
		s.names = make([]byte, len(raw[secNames]))
		copy(s.names, raw[secNames])
		s.targets = make([]byte, len(raw[secTargets]))
		copy(s.targets, raw[secTargets])
		s.aclData = append([]byte(nil), raw[secACLData]...)
	}
	s.nameOff = loadU32(raw[secNameOff], alias)
	s.kids = loadU32(raw[secKids], alias)
	s.mode = loadU32(raw[secMode], alias)
	s.owner = loadU32(raw[secOwner], alias)
	s.nlink = loadU32(raw[secNlink], alias)
	s.size = loadI64(raw[secSize], alias)
	s.mtime = loadI64(raw[secMtime], alias)
	s.ctime = loadI64(raw[secCtime], alias)
	s.atime = loadI64(raw[secAtime], alias)
	s.ino = loadU64(raw[secIno], alias)
	s.acl = loadU32(raw[secACL], alias)
	s.aclOff = loadU32(raw[secACLOff], alias)
	s.decodeSideTables(raw)
	return s
}

// decodeSideTables decodes the small side tables field by field.
func (s *Snapshot) decodeSideTables(raw *[numSections + 1][]byte) {
	le := binary.LittleEndian
	if b := raw[secOwners]; len(b) > 0 {
		s.owners = make([]Owner, len(b)/8)
		for k := range s.owners {
			s.owners[k] = Owner{le.Uint32(b[8*k:]), le.Uint32(b[8*k+4:])}
		}
	}
	if b := raw[secLinks]; len(b) > 0 {
		s.links = make([]sideRec, len(b)/12)
		for k := range s.links {
			s.links[k] = sideRec{le.Uint32(b[12*k:]), le.Uint32(b[12*k+4:]), le.Uint32(b[12*k+8:])}
		}
	}
	if b := raw[secRdevs]; len(b) > 0 {
		s.rdevs = make([]rdevRec, len(b)/16)
		for k := range s.rdevs {
			s.rdevs[k] = rdevRec{Idx: le.Uint32(b[16*k:]), Rdev: le.Uint64(b[16*k+8:])}
		}
	}
	if b := raw[secACLSets]; len(b) > 0 {
		s.aclSets = make([]aclSet, len(b)/8)
		for k := range s.aclSets {
			s.aclSets[k] = aclSet{le.Uint32(b[8*k:]), le.Uint32(b[8*k+4:])}
		}
	}
}

// validate checks what Snapshot's accessors rely on to stay in range.
func (s *Snapshot) validate() error {
	n := uint32(len(s.mode))
	if s.mode[0]&ModeType != ModeDir {
		return errors.New("the root is not a directory")
	}
	if s.nameOff[0] != 0 || s.nameOff[1] != 0 {
		return errors.New("the root has a name")
	}
	if s.nameOff[n] != uint32(len(s.names)) {
		return errors.New("names do not end where the arena does")
	}
	if s.kids[n] != n {
		return errors.New("child ranges do not end at the last entry")
	}
	if len(s.owners) == 0 {
		return errors.New("no owners")
	}
	nowners := uint32(len(s.owners))
	for i := uint32(0); i < n; i++ {
		if s.nameOff[i+1] < s.nameOff[i] {
			return fmt.Errorf("entry %d: name offsets decrease", i)
		}
		k, k1 := s.kids[i], s.kids[i+1]
		if k1 < k || k <= i || (k1 > k && s.mode[i]&ModeType != ModeDir) {
			return fmt.Errorf("entry %d: bad child range [%d, %d)", i, k, k1)
		}
		if s.owner[i] >= nowners {
			return fmt.Errorf("entry %d: owner %d of %d", i, s.owner[i], nowners)
		}
	}
	if n > 1 && s.kids[0] != 1 {
		return errors.New("the root's children do not follow it")
	}
	for k, l := range s.links {
		if l.Idx >= n || (k > 0 && l.Idx <= s.links[k-1].Idx) || uint64(l.Off)+uint64(l.Len) > uint64(len(s.targets)) {
			return fmt.Errorf("symlink record %d out of order or range", k)
		}
	}
	for k, r := range s.rdevs {
		if r.Idx >= n || (k > 0 && r.Idx <= s.rdevs[k-1].Idx) {
			return fmt.Errorf("device record %d out of order or range", k)
		}
	}
	return nil
}

func u32Bytes(v []uint32) []byte {
	if !little {
		b := make([]byte, 0, 4*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint32(b, x)
		}
		return b
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

func u64Bytes(v []uint64) []byte {
	if !little {
		b := make([]byte, 0, 8*len(v))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, x)
		}
		return b
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 8*len(v))
}

func i64Bytes(v []int64) []byte {
	return u64Bytes(unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(v))), len(v)))
}

func loadU32(b []byte, alias bool) []uint32 {
	n := len(b) / 4
	if alias && n > 0 {
		return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(b))), n)
	}
	v := make([]uint32, n)
	if little && n > 0 {
		copy(u32Bytes(v), b)
		return v
	}
	for k := range v {
		v[k] = binary.LittleEndian.Uint32(b[4*k:])
	}
	return v
}

func loadU64(b []byte, alias bool) []uint64 {
	n := len(b) / 8
	if alias && n > 0 {
		return unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(b))), n)
	}
	v := make([]uint64, n)
	if little && n > 0 {
		copy(u64Bytes(v), b)
		return v
	}
	for k := range v {
		v[k] = binary.LittleEndian.Uint64(b[8*k:])
	}
	return v
}

func loadI64(b []byte, alias bool) []int64 {
	v := loadU64(b, alias)
	return unsafe.Slice((*int64)(unsafe.Pointer(unsafe.SliceData(v))), len(v))
}
