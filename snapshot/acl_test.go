package snapshot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// aclEntry is one entry of the xattr form of a POSIX ACL.
type aclEntry struct {
	tag, perm uint16
	id        uint32
}

const (
	tagUserObj  = 0x01
	tagUser     = 0x02
	tagGroupObj = 0x04
	tagMask     = 0x10
	tagOther    = 0x20
	noID        = 0xFFFFFFFF
)

// encodeACL makes an ACL xattr value; entries must be in the kernel's order
// (by tag, then id).
func encodeACL(es ...aclEntry) []byte {
	b := binary.LittleEndian.AppendUint32(nil, posixACLVersion)
	for _, e := range es {
		b = binary.LittleEndian.AppendUint16(b, e.tag)
		b = binary.LittleEndian.AppendUint16(b, e.perm)
		b = binary.LittleEndian.AppendUint32(b, e.id)
	}
	return b
}

// denyACL is user::rw- user:uid:--- group::r-- mask::r-- other::r--.
func denyACL(uid uint32) []byte {
	return encodeACL(aclEntry{tagUserObj, 6, noID}, aclEntry{tagUser, 0, uid},
		aclEntry{tagGroupObj, 4, noID}, aclEntry{tagMask, 4, noID}, aclEntry{tagOther, 4, noID})
}

func setACL(t *testing.T, path, attr string, v []byte) {
	t.Helper()
	if err := unix.Lsetxattr(path, attr, v, 0); err != nil {
		t.Fatalf("setting %s on %s: %v (does the filesystem of TMPDIR support POSIX ACLs?)", attr, path, err)
	}
}

// readACL reads back what the kernel stored, which is what a walk must see.
func readACL(t *testing.T, path, attr string) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Lgetxattr(path, attr, buf)
	if err != nil {
		t.Fatalf("reading %s of %s: %v", attr, path, err)
	}
	return buf[:n]
}

// TestWalkRecordsACLs: the walk records access ACLs on files and
// directories and default ACLs on directories, stores a value shared by two
// entries once, leaves entries without ACLs at none, and the index file
// carries all of it.
func TestWalkRecordsACLs(t *testing.T) {
	root := t.TempDir()
	p := func(n string) string { return filepath.Join(root, n) }
	os.WriteFile(p("denied"), []byte("x"), 0o644)
	os.WriteFile(p("denied-too"), []byte("y"), 0o644)
	os.WriteFile(p("plain"), []byte("z"), 0o644)
	os.Mkdir(p("dir"), 0o755)
	os.Symlink("denied", p("link"))
	setACL(t, p("denied"), XattrACLAccess, denyACL(4242))
	setACL(t, p("denied-too"), XattrACLAccess, denyACL(4242))
	setACL(t, p("dir"), XattrACLAccess, denyACL(4343))
	setACL(t, p("dir"), XattrACLDefault, denyACL(4242))

	s, err := Walk(context.Background(), root, WalkOptions{Walkers: 4, ACLs: true})
	if err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, s *Snapshot) {
		t.Helper()
		look := func(name string) uint32 {
			i, ok := s.Lookup(0, name)
			if !ok {
				t.Fatalf("%s missing", name)
			}
			return i
		}
		for _, c := range []struct {
			name             string
			access, default_ []byte
		}{
			{"denied", readACL(t, p("denied"), XattrACLAccess), nil},
			{"denied-too", readACL(t, p("denied"), XattrACLAccess), nil},
			{"dir", readACL(t, p("dir"), XattrACLAccess), readACL(t, p("dir"), XattrACLDefault)},
			{"plain", nil, nil},
			{"link", nil, nil},
		} {
			got := s.ACL(look(c.name))
			if !bytes.Equal(got.Access, c.access) || !bytes.Equal(got.Default, c.default_) || got.Unrecorded {
				t.Errorf("%s: ACL %+v, want access %x default %x", c.name, got, c.access, c.default_)
			}
		}
		if got := s.ACL(0); got.Access != nil || got.Default != nil || got.Unrecorded {
			t.Errorf("root: ACL %+v, want none", got)
		}
		if with, unrec := s.ACLCounts(); with != 3 || unrec != 0 {
			t.Errorf("ACLCounts %d, %d; want 3, 0", with, unrec)
		}
		// The two files share one pair; the directory's two values are
		// distinct from theirs except its default, which equals them.
		if len(s.aclSets) != 3 || len(s.aclOff) != 4 {
			t.Errorf("%d pairs and %d values, want 3 and 3 (each with none first)", len(s.aclSets), len(s.aclOff)-1)
		}
	}
	check(t, s)

	var buf bytes.Buffer
	if _, err := EncodeIndex(&buf, s, IndexInfo{Source: root}); err != nil {
		t.Fatal(err)
	}
	for _, alias := range []bool{true, false} {
		loaded, _, err := decodeIndex(append([]byte(nil), buf.Bytes()...), alias && little)
		if err != nil {
			t.Fatalf("alias %v: %v", alias, err)
		}
		check(t, loaded)
	}
}

// TestSnapshotWithoutACLsPaysNothing: a tree without ACLs has no per-entry
// ACL column, so the common case costs no bytes per entry.
func TestSnapshotWithoutACLsPaysNothing(t *testing.T) {
	s := synthetic(t, 1000)
	if s.HasACLs() || cap(s.acl) != 0 {
		t.Errorf("ACL column of %d for a tree without ACLs", cap(s.acl))
	}
}

// TestSharedRestrictsUnrecorded: an entry whose access control could not
// be recorded keeps its mode in the snapshot (an index or a diff must not
// change it) but a Shared view shows it to its owner only, without ACLs.
func TestSharedRestrictsUnrecorded(t *testing.T) {
	b := NewBuilder()
	b.SetACLsRecorded()
	acl := denyACL(7)
	es := []Entry{
		{Name: "nfs4", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 2}, ACL: b.InternACL(ACL{Access: acl, Unrecorded: true})},
		{Name: "posix", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 3}, ACL: b.InternACL(ACL{Access: acl})},
		{Name: "plain", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 4}},
	}
	b.SetDir(0, es)
	s, err := b.Build(Attr{Mode: ModeDir | 0o755, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	sh := s.Shared()
	for _, c := range []struct {
		name           string
		mode, shared   uint32
		sharedACL      bool
		sharedUnrecord bool
	}{
		{"nfs4", ModeReg | 0o644, ModeReg | 0o600, false, true},
		{"posix", ModeReg | 0o644, ModeReg | 0o644, true, false},
		{"plain", ModeReg | 0o644, ModeReg | 0o644, false, false},
	} {
		i, _ := s.Lookup(0, c.name)
		if got := s.Attr(i).Mode; got != c.mode || s.Mode(i) != c.mode {
			t.Errorf("%s: mode %o, want %o", c.name, got, c.mode)
		}
		if got := sh.Attr(i).Mode; got != c.shared || sh.Mode(i) != c.shared {
			t.Errorf("%s shared: mode %o, want %o", c.name, got, c.shared)
		}
		a := sh.ACL(i)
		if (a.Access != nil) != c.sharedACL || a.Unrecorded != c.sharedUnrecord {
			t.Errorf("%s shared: ACL %+v", c.name, a)
		}
	}
	if with, unrec := s.ACLCounts(); with != 1 || unrec != 1 {
		t.Errorf("ACLCounts %d, %d; want 1, 1", with, unrec)
	}
	var buf bytes.Buffer
	if _, err := EncodeIndex(&buf, s, IndexInfo{}); err != nil {
		t.Fatal(err)
	}
	loaded, _, err := DecodeIndex(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if i, _ := loaded.Lookup(0, "nfs4"); !loaded.ACL(i).Unrecorded || loaded.Shared().Mode(i) != ModeReg|0o600 {
		t.Errorf("the unrecorded mark did not survive the index")
	}
}

// TestValidateACL: a loaded index whose ACL tables point out of range, or
// hold something the kernel would not take as an ACL, is refused.
func TestValidateACL(t *testing.T) {
	mk := func() *Snapshot {
		b := NewBuilder()
		b.SetACLsRecorded()
		b.SetDir(0, []Entry{{Name: "f", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 2}, ACL: b.InternACL(ACL{Access: denyACL(7)})}})
		s, err := b.Build(Attr{Mode: ModeDir | 0o755, Ino: 1})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if err := mk().validateACL(); err != nil {
		t.Fatalf("a built snapshot fails: %v", err)
	}
	for name, spoil := range map[string]func(s *Snapshot){
		"pair out of range":       func(s *Snapshot) { s.acl[1] = 5 },
		"value out of range":      func(s *Snapshot) { s.aclSets[1].Access = 9 },
		"column too short":        func(s *Snapshot) { s.acl = s.acl[:1] },
		"offsets past the arena":  func(s *Snapshot) { s.aclOff[2] = 1000 },
		"not an ACL":              func(s *Snapshot) { s.aclData[0] = 9 },
		"default on a file":       func(s *Snapshot) { s.aclSets[1].Default = 1 },
		"no empty first pair":     func(s *Snapshot) { s.aclSets[0].Access = 1 },
		"offsets decrease":        func(s *Snapshot) { s.aclOff = []uint32{0, 0, 44, 40} },
		"missing empty first off": func(s *Snapshot) { s.aclOff = s.aclOff[1:] },
	} {
		s := mk()
		spoil(s)
		if err := s.validateACL(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestNFS4Trivial(t *testing.T) {
	ace := func(who string) []byte {
		b := make([]byte, 16, 16+len(who)+3)
		binary.BigEndian.PutUint32(b[12:], uint32(len(who)))
		b = append(b, who...)
		return append(b, make([]byte, (4-len(who)%4)%4)...)
	}
	acl := func(whos ...string) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(whos)))
		for _, w := range whos {
			b = append(b, ace(w)...)
		}
		return b
	}
	for _, c := range []struct {
		name string
		v    []byte
		want bool
	}{
		{"mode only", acl("OWNER@", "GROUP@", "EVERYONE@"), true},
		{"empty", acl(), true},
		{"named user", acl("OWNER@", "alice@example.org", "EVERYONE@"), false},
		{"named group", acl("GROUP@", "staff@example.org"), false},
		{"truncated", acl("OWNER@", "GROUP@")[:30], false},
		{"trailing bytes", append(acl("OWNER@"), 0, 0, 0, 0), false},
		{"count past the end", binary.BigEndian.AppendUint32(nil, 3), false},
		{"nothing", nil, false},
	} {
		if got := nfs4Trivial(c.v); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// withACLOnEveryEntry gives every entry of s one shared ACL, as a default
// ACL inherited through a whole tree does: the most the per-entry column
// can cost.
func withACLOnEveryEntry(s *Snapshot) {
	b := NewBuilder()
	v := b.InternACL(ACL{Access: denyACL(4242)})
	b.takeACLs(s)
	s.aclsRecorded = true
	s.acl = make([]uint32, s.Len())
	for i := range s.acl {
		s.acl[i] = v
	}
}

// BenchmarkSnapshotMemoryACL is BenchmarkSnapshotMemory for a tree where
// every entry has an ACL; without ACLs the figures are
// BenchmarkSnapshotMemory's, since the column is then empty.
func BenchmarkSnapshotMemoryACL(b *testing.B) {
	const n = 1_000_000
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		s := synthetic(b, n)
		withACLOnEveryEntry(s)
		runtime.GC()
		runtime.ReadMemStats(&after)
		var buf bytes.Buffer
		if _, err := EncodeIndex(&buf, s, IndexInfo{}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/entry")
		b.ReportMetric(float64(s.SizeBytes())/n, "arrays-B/entry")
		b.ReportMetric(float64(buf.Len())/n, "index-B/entry")
		runtime.KeepAlive(s)
	}
}

// TestIndexACLNoPanic is TestIndexNoPanic for the ACL tables, which sit at
// the end of the file: edits there, checksum recomputed, are refused or
// leave every ACL accessor in range, in a Shared view too.
func TestIndexACLNoPanic(t *testing.T) {
	b := NewBuilder()
	b.SetACLsRecorded()
	d := b.NewDir()
	b.SetDir(0, []Entry{
		{Name: "d", Dir: d, Attr: Attr{Mode: ModeDir | 0o755, Ino: 2}, ACL: b.InternACL(ACL{Access: denyACL(1), Default: denyACL(2)})},
		{Name: "f", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 3}, ACL: b.InternACL(ACL{Access: denyACL(1), Unrecorded: true})},
	})
	b.SetDir(d, []Entry{{Name: "g", Dir: NoDir, Attr: Attr{Mode: ModeReg | 0o644, Ino: 4}, ACL: b.InternACL(ACL{Access: denyACL(2)})}})
	s, err := b.Build(Attr{Mode: ModeDir | 0o755, Ino: 1})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := EncodeIndex(&buf, s, IndexInfo{}); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	r := rand.New(rand.NewSource(1))
	tail := 300 // the ACL sections and more
	accepted := 0
	for try := 0; try < 3000; try++ {
		b := bytes.Clone(good)
		k := len(b) - trailerSize - 1 - r.Intn(tail)
		b[k] ^= byte(1 << r.Intn(8))
		if try%3 == 0 {
			b[k] = byte(r.Intn(256))
		}
		s, _, err := DecodeIndex(resum(b))
		if err != nil {
			continue
		}
		accepted++
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("byte %d: accessor panicked: %v", k, p)
				}
			}()
			sh := s.Shared()
			for i := uint32(0); int(i) < s.Len(); i++ {
				_ = s.ACL(i)
				_ = sh.ACL(i)
				_ = sh.Attr(i)
			}
			s.ACLCounts()
		}()
	}
	// Accepted edits are the ones whose accessors are exercised.
	if accepted == 0 || accepted == 3000 {
		t.Errorf("%d of 3000 edits accepted; want some accepted and some refused", accepted)
	}
}

// TestRecordACLWithoutGetxattrat: on kernels before 6.13 (or behind a
// seccomp filter) the walk reads ACLs by path and records the same values.
func TestRecordACLWithoutGetxattrat(t *testing.T) {
	root := t.TempDir()
	f := filepath.Join(root, "f")
	os.WriteFile(f, nil, 0o644)
	setACL(t, f, XattrACLAccess, denyACL(4242))
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Lstat(f, &st); err != nil {
		t.Fatal(err)
	}
	for _, noAt := range []bool{false, true} {
		w := &walker{b: NewBuilder()}
		w.caps.noAt.Store(noAt)
		v := w.recordACL(fd, root, "f", &st, make([]byte, aclScratch))
		s, err := w.b.Build(Attr{Mode: ModeDir | 0o755})
		if err != nil {
			t.Fatal(err)
		}
		set := s.aclSets[v&^aclUnrecorded]
		if got := s.aclValue(set.Access); v&aclUnrecorded != 0 || !bytes.Equal(got, readACL(t, f, XattrACLAccess)) {
			t.Errorf("without getxattrat %v: recorded %x (value %x)", noAt, got, v)
		}
	}
}

// TestWalkACLsOption: without WalkOptions.ACLs the walk records no ACL and
// says so, in the snapshot and in its index; with it, it records them and
// says that. An index that claims no ACLs but carries some is refused.
func TestWalkACLsOption(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "denied"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(root, "dir"), 0o755)
	setACL(t, filepath.Join(root, "denied"), XattrACLAccess, denyACL(4242))
	setACL(t, filepath.Join(root, "dir"), XattrACLDefault, denyACL(4243))
	for _, record := range []bool{false, true} {
		s, err := Walk(context.Background(), root, WalkOptions{Walkers: 2, ACLs: record})
		if err != nil {
			t.Fatal(err)
		}
		if s.ACLsRecorded() != record || s.HasACLs() != record {
			t.Errorf("ACLs %v: recorded %v, has ACLs %v", record, s.ACLsRecorded(), s.HasACLs())
		}
		var buf bytes.Buffer
		info, err := EncodeIndex(&buf, s, IndexInfo{})
		if err != nil {
			t.Fatal(err)
		}
		loaded, linfo, err := DecodeIndex(buf.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if info.ACLs != record || linfo.ACLs != record || loaded.ACLsRecorded() != record {
			t.Errorf("ACLs %v: index says %v, loaded %v, snapshot %v", record, info.ACLs, linfo.ACLs, loaded.ACLsRecorded())
		}
		if i, _ := loaded.Lookup(0, "denied"); (loaded.ACL(i).Access != nil) != record {
			t.Errorf("ACLs %v: loaded ACL of denied %+v", record, loaded.ACL(i))
		}
		if !record {
			continue
		}
		flags := preambleSize + headerFixed - 8
		for _, f := range []byte{0, 2} {
			b := bytes.Clone(buf.Bytes())
			b[flags] = f
			if _, _, err := DecodeIndex(resum(b)); !errors.Is(err, ErrIndexCorrupt) {
				t.Errorf("flags %d on an index with ACLs: %v, want corrupt", f, err)
			}
		}
	}
}
