package peer

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cachefs/cachefs/blockcache"
)

// ownedBy returns a key of tr and a block number that node owns.
func ownedBy(t *testing.T, tr *tree, node *testNode) (blockcache.Key, int64) {
	t.Helper()
	for _, k := range tr.keys {
		for b := int64(0); b*testBS < k.Size; b++ {
			if node.node.ring.owner(k, b) == node.addr {
				return k, b
			}
		}
	}
	t.Fatal("node owns no block")
	return blockcache.Key{}, 0
}

// ask sends a block request to node signed with secret at time at.
func ask(t *testing.T, node *testNode, q string, secret []byte, at time.Time) (*http.Response, []byte) {
	t.Helper()
	return askSignedFor(t, node, q, q, secret, at)
}

// askSignedFor sends query q to node with a MAC made for query signed, so
// that a test can replay one request's MAC on another.
func askSignedFor(t *testing.T, node *testNode, q, signed string, secret []byte, at time.Time) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+node.addr+"/v1/block?"+q, nil)
	if err != nil {
		t.Fatal(err)
	}
	if secret != nil {
		ts, nonce, mac := signer{secret}.request(signed, at)
		req.Header.Set(hdrTime, ts)
		req.Header.Set(hdrNonce, nonce)
		req.Header.Set(hdrAuth, mac)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// A body that fails half way must not pass for an empty one.
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer to %s: %v", q, err)
	}
	return resp, body
}

func TestRequestsWithoutTheSecretRefused(t *testing.T) {
	tr := newTree(t, sizes)
	nodes := cluster(t, tr, 2, nil)
	k, b := ownedBy(t, tr, nodes[1])
	q := query(k, b, testBS)
	cases := []struct {
		name   string
		secret []byte
		at     time.Time
	}{
		{"no MAC", nil, time.Now()},
		{"wrong secret", []byte("another job's secret, 32 bytes.."), time.Now()},
		{"too old", testSecret, time.Now().Add(-2 * Window)},
		{"from the future", testSecret, time.Now().Add(2 * Window)},
	}
	for _, c := range cases {
		resp, body := ask(t, nodes[1], q, c.secret, c.at)
		if resp.StatusCode != http.StatusForbidden || len(body) != 0 {
			t.Errorf("%s: status %d with %d bytes; want 403 and nothing", c.name, resp.StatusCode, len(body))
		}
	}
	// A MAC made for one block does not open another.
	resp, body := askSignedFor(t, nodes[1], query(k, b+1, testBS), q, testSecret, time.Now())
	if resp.StatusCode != http.StatusForbidden || len(body) != 0 {
		t.Errorf("MAC of another query: status %d with %d bytes", resp.StatusCode, len(body))
	}
	if got := nodes[1].node.Stats().Refused; got != int64(len(cases)+1) {
		t.Errorf("refused %d requests, want %d", got, len(cases)+1)
	}
	if got := nodes[1].node.Stats().BytesToPeers; got != 0 {
		t.Errorf("served %d bytes to unauthenticated requests", got)
	}
	// The right secret gets the block.
	resp, body = ask(t, nodes[1], q, testSecret, time.Now())
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Errorf("signed request: status %d with %d bytes", resp.StatusCode, len(body))
	}
}

func TestOnlySnapshotFilesServed(t *testing.T) {
	tr := newTree(t, sizes)
	// Written after the snapshot: on the source, not in the snapshot.
	if err := os.WriteFile(tr.root+"/late", []byte(strings.Repeat("x", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	nodes := cluster(t, tr, 1, nil)
	k := tr.keys[0]
	for _, bad := range []blockcache.Key{
		{Path: "late", Ino: k.Ino, Size: 100, Mtime: k.Mtime},
		{Path: "../" + k.Path, Ino: k.Ino, Size: k.Size, Mtime: k.Mtime},
		{Path: "/etc/passwd", Ino: k.Ino, Size: k.Size, Mtime: k.Mtime},
		{Path: k.Path, Ino: k.Ino + 1, Size: k.Size, Mtime: k.Mtime},
		{Path: k.Path, Ino: k.Ino, Size: k.Size, Mtime: k.Mtime + 1},
	} {
		var b int64 = -1
		for x := int64(0); x*testBS < bad.Size; x++ {
			if nodes[0].node.ring.owner(bad, x) == nodes[0].addr {
				b = x
			}
		}
		resp, body := ask(t, nodes[0], query(bad, b, testBS), testSecret, time.Now())
		if resp.StatusCode == http.StatusOK || len(body) != 0 {
			t.Errorf("%+v: status %d with %d bytes", bad, resp.StatusCode, len(body))
		}
	}
	// Blocks past the end, however far.
	for _, b := range []int64{(k.Size/testBS + 1) * 2, 1 << 62, -1} {
		resp, body := ask(t, nodes[0], query(k, b, testBS), testSecret, time.Now())
		if resp.StatusCode != http.StatusNotFound || len(body) != 0 {
			t.Errorf("block %d of %s: status %d with %d bytes", b, k.Path, resp.StatusCode, len(body))
		}
	}
	if n := tr.src.opens.Load(); n != 0 {
		t.Errorf("refused requests opened %d source files", n)
	}
}

func TestUnreadableFileNotServed(t *testing.T) {
	tr := newTree(t, map[string]int{"secret/key": testBS, "pub": testBS})
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{"secret/key", 0o600}, {"secret", 0o700}} {
		if err := os.Chmod(tr.root+"/"+c.path, c.mode); err != nil {
			t.Fatal(err)
		}
	}
	// Walk again so the snapshot holds the modes.
	tr = retake(t, tr)
	nodes := cluster(t, tr, 1, func(c *Config) { c.Cred = &Cred{Uid: 4242, Gids: []uint32{4242}} })
	for _, k := range tr.keys {
		resp, body := ask(t, nodes[0], query(k, 0, testBS), testSecret, time.Now())
		want := http.StatusOK
		if k.Path == "secret/key" {
			want = http.StatusForbidden
			if resp.Header.Get(hdrDenied) == "" {
				t.Errorf("%s: refusal not marked as a permission refusal", k.Path)
			}
		}
		if resp.StatusCode != want || (want != http.StatusOK && len(body) != 0) {
			t.Errorf("%s as uid 4242: status %d with %d bytes, want %d", k.Path, resp.StatusCode, len(body), want)
		}
	}
}

// retake walks tr's root again, for a snapshot of changed modes.
func retake(t *testing.T, tr *tree) *tree {
	t.Helper()
	fresh := walkTree(t, tr.root)
	fresh.data, fresh.total, fresh.src = tr.data, tr.total, tr.src
	return fresh
}

// fakeOwner is a peer that answers every request with what answer writes.
func fakeOwner(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) string {
	srv := httptest.NewServer(http.HandlerFunc(answer))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestBadPeerAnswersRejected(t *testing.T) {
	forged := func(w http.ResponseWriter, r *http.Request, body []byte, sum string, secret []byte) {
		w.Header().Set(hdrSum, sum)
		w.Header().Set(hdrAuth, signer{secret}.response(r.Header.Get(hdrAuth), sum, body))
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	}
	crc := func(b []byte) string { return fmt.Sprintf("%08x", crcOf(b)) }
	cases := map[string]func(w http.ResponseWriter, r *http.Request, n int){
		"wrong bytes, stale CRC": func(w http.ResponseWriter, r *http.Request, n int) {
			forged(w, r, make([]byte, n), "deadbeef", testSecret)
		},
		"wrong bytes, their CRC, no secret": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n)
			forged(w, r, b, crc(b), []byte("not the job's secret, 32 bytes.."))
		},
		"short": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n-1)
			forged(w, r, b, crc(b), testSecret)
		},
		"longer than asked": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n+1)
			forged(w, r, b, crc(b), testSecret)
		},
		"MAC of another request": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n)
			w.Header().Set(hdrSum, crc(b))
			w.Header().Set(hdrAuth, signer{testSecret}.response(hex.EncodeToString(make([]byte, 32)), crc(b), b))
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		},
		"MAC cut short": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n)
			mac := signer{testSecret}.response(r.Header.Get(hdrAuth), crc(b), b)
			w.Header().Set(hdrSum, crc(b))
			w.Header().Set(hdrAuth, mac[:len(mac)-2])
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		},
		"MAC of another checksum": func(w http.ResponseWriter, r *http.Request, n int) {
			b := make([]byte, n)
			w.Header().Set(hdrSum, crc(b))
			w.Header().Set(hdrAuth, signer{testSecret}.response(r.Header.Get(hdrAuth), "00000000", b))
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
			w.Write(b)
		},
		"hangs": func(w http.ResponseWriter, r *http.Request, n int) {
			<-r.Context().Done()
		},
		"error": func(w http.ResponseWriter, r *http.Request, n int) {
			w.WriteHeader(http.StatusInternalServerError)
		},
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			// 64 blocks: the bad peer owns some of them but for a chance
			// of 2^-64.
			tr := newTree(t, map[string]int{"f": 64 * testBS})
			var asked atomic.Int64
			bad := fakeOwner(t, func(w http.ResponseWriter, r *http.Request) {
				asked.Add(1)
				key, b, bs, err := parseQuery(r)
				if err != nil {
					t.Error(err)
					return
				}
				answer(w, r, int(min(bs, key.Size-b*bs)))
			})
			nodes := cluster(t, tr, 1, func(c *Config) { c.Timeout = 300 * time.Millisecond; c.Backoff = time.Hour }, bad)
			readAll(t, tr, nodes[0], 0)
			want := int64(1)
			if name == "hangs" {
				// A deadline may be a busy owner: avoided after a few.
				want = slowStrikes
			}
			if asked.Load() != want {
				t.Errorf("the bad peer was asked %d times; want %d, then avoided", asked.Load(), want)
			}
			st := nodes[0].node.Stats()
			if st.BytesFromPeers != 0 || st.Peers[0].Failures != want || !st.Peers[0].Avoided {
				t.Errorf("from the bad peer %d bytes, %d failures, avoided %v; want none, %d, true",
					st.BytesFromPeers, st.Peers[0].Failures, st.Peers[0].Avoided, want)
			}
		})
	}
}

// TestResponseMACBindsEverything checks the response MAC alone: it
// verifies for exactly the request, checksum and bytes it was made for,
// and each answer draws a new GCM nonce.
func TestResponseMACBindsEverything(t *testing.T) {
	s := signer{testSecret}
	_, _, req := s.request("p=f&b=0", time.Now())
	body := []byte("the bytes of one block")
	sum := fmt.Sprintf("%08x", crcOf(body))
	mac := s.response(req, sum, body)
	if err := s.checkResponse(req, sum, body, mac); err != nil {
		t.Fatalf("a genuine response refused: %v", err)
	}
	if again := s.response(req, sum, body); again == mac {
		t.Error("two answers to one request carry the same nonce and tag")
	}
	flipped := func(x string) string {
		b := []byte(x)
		b[len(b)/2] ^= 1
		return string(b)
	}
	_, _, other := s.request("p=f&b=0", time.Now())
	cases := map[string]func() error{
		"body changed":     func() error { return s.checkResponse(req, sum, []byte(flipped(string(body))), mac) },
		"body cut":         func() error { return s.checkResponse(req, sum, body[:len(body)-1], mac) },
		"checksum changed": func() error { return s.checkResponse(req, "00000000", body, mac) },
		"another request":  func() error { return s.checkResponse(other, sum, body, mac) },
		"tag changed":      func() error { return s.checkResponse(req, sum, body, flipped(mac)) },
		"tag cut":          func() error { return s.checkResponse(req, sum, body, mac[:len(mac)-2]) },
		"tag empty":        func() error { return s.checkResponse(req, sum, body, "") },
		"another secret": func() error {
			return signer{[]byte("not the job's secret, 32 bytes..")}.checkResponse(req, sum, body, mac)
		},
		"tag not hex": func() error { return s.checkResponse(req, sum, body, "zz"+mac[2:]) },
	}
	for name, check := range cases {
		if err := check(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
