package blockcache

// bitset is one bit per block: present, or checked against its sum.
type bitset []uint64

func (m bitset) has(b int64) bool { return m[b/64]&(1<<(b%64)) != 0 }
func (m bitset) set(b int64)      { m[b/64] |= 1 << (b % 64) }
func (m bitset) clear(b int64)    { m[b/64] &^= 1 << (b % 64) }
