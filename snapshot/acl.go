package snapshot

// Access control lists recorded with the snapshot.
//
// A mount that other users can reach (allow_other) relies on the kernel to
// check access, and the kernel can check only what the mount tells it: mode
// bits, owners and POSIX ACLs. So the walk records each entry's
// system.posix_acl_access and, for directories, system.posix_acl_default,
// as the raw xattr values the kernel will parse again.
//
// # Layout
//
// Most entries carry no ACL and those that do usually share one (a project
// directory's default ACL is inherited by everything below it), so values
// are stored once: distinct values in one byte arena (aclData, delimited by
// aclOff, value 0 is "none"), distinct access/default pairs in aclSets (pair
// 0 is "none"), and per entry a uint32 into aclSets. That column is empty
// when no entry has an ACL, so trees without ACLs pay nothing per entry.
//
// # What cannot be recorded
//
// An entry whose access control the walk could not capture (an NFSv4 ACL
// naming users or groups, an ACL that could not be read, or one the kernel
// could not take back) keeps the aclUnrecorded bit in its column value. Its
// mode bits may grant more than the source does; a Shared view shows such
// entries to their owners only.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Names of the extended attributes that carry POSIX ACLs.
const (
	XattrACLAccess  = "system.posix_acl_access"
	XattrACLDefault = "system.posix_acl_default"
	xattrNFS4ACL    = "system.nfs4_acl"
)

const (
	// aclUnrecorded marks, in the per-entry column, an entry whose access
	// control is not (fully) in the snapshot.
	aclUnrecorded = 1 << 31
	// maxACLBytes is the largest ACL value recorded: the kernel's FUSE
	// module fetches an ACL into one page and fails the permission check
	// (for everyone, the owner included) when it is larger.
	maxACLBytes = 4096
	// posixACLVersion is the version word of the xattr form of an ACL.
	posixACLVersion = 2
)

// ACL is an entry's access control as recorded by the walk.
type ACL struct {
	Access  []byte // system.posix_acl_access value; nil when none
	Default []byte // system.posix_acl_default value; nil when none
	// Unrecorded reports that the source controls access to the entry in a
	// way the snapshot does not hold, so its mode bits may say too much.
	Unrecorded bool
}

type aclSet struct{ Access, Default uint32 }

// aclTable interns ACL values and pairs while a Builder collects entries.
type aclTable struct {
	blobs map[string]uint32
	sets  map[aclSet]uint32
	off   []uint32
	data  []byte
	list  []aclSet
}

func (t *aclTable) init() {
	if t.off == nil {
		t.blobs = map[string]uint32{}
		t.sets = map[aclSet]uint32{}
		t.off = []uint32{0, 0}
		t.list = []aclSet{{}}
	}
}

func (t *aclTable) blob(v []byte) uint32 {
	if v == nil {
		return 0
	}
	if k, ok := t.blobs[string(v)]; ok {
		return k
	}
	t.data = append(t.data, v...)
	t.off = append(t.off, uint32(len(t.data)))
	k := uint32(len(t.off) - 2)
	t.blobs[string(v)] = k
	return k
}

// intern returns the column value for an entry with these ACLs.
func (t *aclTable) intern(a ACL) uint32 {
	t.init()
	set := aclSet{t.blob(a.Access), t.blob(a.Default)}
	k, ok := t.sets[set]
	if !ok {
		k = uint32(len(t.list))
		t.sets[set] = k
		t.list = append(t.list, set)
	}
	if a.Unrecorded {
		k |= aclUnrecorded
	}
	return k
}

// InternACL stores a's values once and returns the value for Entry.ACL (0
// when a is empty). Safe for concurrent use.
func (b *Builder) InternACL(a ACL) uint32 {
	if a.Access == nil && a.Default == nil && !a.Unrecorded {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acls.intern(a)
}

// SetACLsRecorded marks the snapshot as holding every entry's ACLs, so
// that a mount other users can reach may serve it.
func (b *Builder) SetACLsRecorded() {
	b.mu.Lock()
	b.aclsRecorded = true
	b.mu.Unlock()
}

// SetRootACL records the root directory's ACL value from InternACL.
func (b *Builder) SetRootACL(v uint32) {
	b.mu.Lock()
	b.rootACL = v
	b.mu.Unlock()
}

// takeACLs moves the interned tables into s; every snapshot has value and
// pair 0, so accessors need no length checks.
func (b *Builder) takeACLs(s *Snapshot) {
	b.acls.init()
	s.aclSets, s.aclOff, s.aclData = b.acls.list, b.acls.off, b.acls.data
	b.acls = aclTable{}
}

// appendACL adds entry idx's column value, allocating the column only once
// some entry has an ACL.
func (s *Snapshot) appendACL(idx uint32, v uint32, n int) {
	if v != 0 && s.acl == nil {
		s.acl = make([]uint32, idx, n)
	}
	if s.acl != nil {
		s.acl = append(s.acl, v)
	}
}

// ACL returns entry i's access control lists. The slices alias the
// snapshot; callers must not modify them.
func (s *Snapshot) ACL(i uint32) ACL {
	if len(s.acl) == 0 {
		return ACL{}
	}
	v := s.acl[i]
	if v&aclUnrecorded != 0 && s.shared {
		return ACL{Unrecorded: true}
	}
	set := s.aclSets[v&^aclUnrecorded]
	return ACL{Access: s.aclValue(set.Access), Default: s.aclValue(set.Default), Unrecorded: v&aclUnrecorded != 0}
}

func (s *Snapshot) aclValue(k uint32) []byte {
	if k == 0 {
		return nil
	}
	return s.aclData[s.aclOff[k]:s.aclOff[k+1]]
}

// ACLsRecorded reports whether the walk asked for every entry's ACLs. A
// snapshot taken without them holds none and suits only a private mount,
// whose user the source itself refuses what an ACL refuses.
func (s *Snapshot) ACLsRecorded() bool { return s.aclsRecorded }

// HasACLs reports whether any entry carries an ACL or unrecorded access
// control.
func (s *Snapshot) HasACLs() bool { return len(s.acl) > 0 }

// ACLCounts counts the entries with a recorded ACL and those whose access
// control could not be recorded.
func (s *Snapshot) ACLCounts() (withACL, unrecorded int64) {
	for _, v := range s.acl {
		if v&aclUnrecorded != 0 {
			unrecorded++
		} else if v != 0 {
			withACL++
		}
	}
	return withACL, unrecorded
}

// Shared returns a view of s for a mount other users can reach: entries
// whose access control could not be recorded lose their group and other
// mode bits (and show no ACL), so only their owners and root get in. The
// view shares s's arrays.
func (s *Snapshot) Shared() *Snapshot {
	v := *s
	v.shared = true
	return &v
}

// restrictUnrecorded applies the Shared policy to entry i's mode.
func (s *Snapshot) restrictUnrecorded(i uint32, mode uint32) uint32 {
	if s.shared && len(s.acl) > 0 && s.acl[i]&aclUnrecorded != 0 {
		return mode &^ 0o077
	}
	return mode
}

// validPOSIXACL reports whether v has the shape of an ACL xattr the kernel
// accepts: a version word and whole 8-byte entries, within maxACLBytes.
func validPOSIXACL(v []byte) bool {
	return len(v) >= 4 && len(v) <= maxACLBytes && (len(v)-4)%8 == 0 &&
		binary.LittleEndian.Uint32(v) == posixACLVersion
}

// nfs4Trivial reports whether an NFSv4 ACL (the XDR form Linux's NFS client
// returns for system.nfs4_acl) names only OWNER@, GROUP@ and EVERYONE@.
// Servers derive the mode bits from such an ACL and it from them, so the
// mode says what it says. Any named user or group, or a value that does not
// parse, is access control the snapshot cannot hold.
func nfs4Trivial(v []byte) bool {
	be := binary.BigEndian
	if len(v) < 4 {
		return false
	}
	n := be.Uint32(v)
	v = v[4:]
	for ; n > 0; n-- {
		// type, flag, access mask, then the who string's length.
		if len(v) < 16 {
			return false
		}
		l := be.Uint32(v[12:])
		v = v[16:]
		if uint64(l) > uint64(len(v)) {
			return false
		}
		switch string(v[:l]) {
		case "OWNER@", "GROUP@", "EVERYONE@":
		default:
			return false
		}
		padded := int((l + 3) &^ 3)
		if padded > len(v) {
			return false
		}
		v = v[padded:]
	}
	return len(v) == 0
}

// validateACL checks the ACL tables of a loaded index the way validate
// checks the rest: no value can index out of range, and every recorded ACL
// is one the kernel accepts.
func (s *Snapshot) validateACL() error {
	n := len(s.mode)
	if len(s.acl) != 0 && len(s.acl) != n {
		return fmt.Errorf("%d ACL column values for %d entries", len(s.acl), n)
	}
	if len(s.aclOff) < 2 || s.aclOff[0] != 0 || s.aclOff[1] != 0 || len(s.aclSets) == 0 || s.aclSets[0] != (aclSet{}) {
		return errors.New("ACL tables lack their empty first value")
	}
	if !s.aclsRecorded && (len(s.acl) != 0 || len(s.aclSets) != 1 || len(s.aclOff) != 2) {
		return errors.New("ACL tables in an index whose walk recorded no ACLs")
	}
	nvals := uint32(len(s.aclOff) - 1)
	for k := 1; k < len(s.aclOff); k++ {
		if s.aclOff[k] < s.aclOff[k-1] {
			return fmt.Errorf("ACL value %d: offsets decrease", k-1)
		}
	}
	if s.aclOff[nvals] != uint32(len(s.aclData)) {
		return errors.New("ACL values do not end where their arena does")
	}
	for k := uint32(1); k < nvals; k++ {
		if !validPOSIXACL(s.aclValue(k)) {
			return fmt.Errorf("ACL value %d is not a POSIX ACL", k)
		}
	}
	for k, set := range s.aclSets {
		if set.Access >= nvals || set.Default >= nvals {
			return fmt.Errorf("ACL pair %d refers past the %d values", k, nvals)
		}
	}
	nsets := uint32(len(s.aclSets))
	for i, v := range s.acl {
		if v&^aclUnrecorded >= nsets {
			return fmt.Errorf("entry %d: ACL pair %d of %d", i, v&^aclUnrecorded, nsets)
		}
		if set := s.aclSets[v&^aclUnrecorded]; set.Default != 0 && s.mode[i]&ModeType != ModeDir {
			return fmt.Errorf("entry %d: a default ACL on a non-directory", i)
		}
	}
	return nil
}
