package peer

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"time"
)

// Header names of the protocol.
const (
	hdrTime  = "X-Cachefs-Time"  // request: Unix time in ns
	hdrNonce = "X-Cachefs-Nonce" // request: 16 random bytes, hex
	hdrAuth  = "X-Cachefs-Auth"  // request: HMAC-SHA256; response: GCM nonce and tag; hex
	hdrSum   = "X-Cachefs-Crc32c"
	// hdrDenied marks a 403 for a file the owner's credentials may not
	// read, as opposed to one for a request that failed authentication.
	hdrDenied = "X-Cachefs-Denied"
)

// Window is how far a request's time may lie from the server's clock. The
// nodes of a job keep NTP time; a minute covers their skew and a slow
// queue, and bounds how long a captured request can be replayed (a replay
// only fetches the same block again, to whoever sent the original).
const Window = time.Minute

// ErrUnauthorized means a request or a response did not carry a valid
// MAC under the job's secret.
var ErrUnauthorized = errors.New("peer: not authenticated by the job's secret")

type signer struct{ secret []byte }

func (s signer) mac(parts ...string) hash.Hash {
	h := hmac.New(sha256.New, s.secret)
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{'\n'})
	}
	return h
}

// request returns the time, nonce and MAC for a request whose query is q.
func (s signer) request(q string, now time.Time) (ts, nonce, mac string) {
	var n [16]byte
	rand.Read(n[:])
	ts = strconv.FormatInt(now.UnixNano(), 10)
	nonce = hex.EncodeToString(n[:])
	return ts, nonce, hex.EncodeToString(s.mac("cachefs-peer-request-v1", ts, nonce, q).Sum(nil))
}

// checkRequest verifies a request's MAC and time.
func (s signer) checkRequest(q, ts, nonce, mac string, now time.Time) error {
	got, err := hex.DecodeString(mac)
	if err != nil || len(nonce) != 32 {
		return ErrUnauthorized
	}
	want := s.mac("cachefs-peer-request-v1", ts, nonce, q).Sum(nil)
	if !hmac.Equal(got, want) {
		return ErrUnauthorized
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrUnauthorized
	}
	if d := now.Sub(time.Unix(0, t)); d > Window || d < -Window {
		return fmt.Errorf("%w: request time off by %v", ErrUnauthorized, d.Round(time.Second))
	}
	return nil
}

// The response's MAC is GMAC (AES-256-GCM sealing no plaintext, with the
// body as its additional data) rather than an HMAC of the body: both stop
// anyone without the secret from making a node accept bytes, but GHASH runs
// on the carry-less multiply instruction at several GB/s where SHA-256,
// even with SHA-NI, ran at a few hundred MB/s on these machines and was
// most of a peer hit's CPU. The AES key is an HMAC-SHA256, under the
// secret, of the request's MAC and the body's CRC-32C, so it is new for
// every request (the request's MAC covers a random nonce and the time)
// and a tag made for one request or checksum verifies for no other; the
// 96-bit GCM nonce is drawn at random per response, so even a request
// replayed within Window never gets two answers under one key and nonce.

// responseKey is the per-request GMAC key.
func (s signer) responseKey(reqMAC, sum string) (cipher.AEAD, error) {
	block, err := aes.NewCipher(s.mac("cachefs-peer-response-v2", reqMAC, sum).Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// response returns the MAC binding body, with its CRC-32C, to the request
// whose MAC was reqMAC: a response cannot be replayed to another request,
// nor its bytes swapped by anyone without the secret. It is the GCM nonce
// and tag, hex.
func (s signer) response(reqMAC, sum string, body []byte) string {
	g, err := s.responseKey(reqMAC, sum)
	if err != nil {
		// An HMAC-SHA256 is always a valid AES-256 key.
		panic(err)
	}
	return hex.EncodeToString(g.Seal(nil, nil, nil, body))
}

func (s signer) checkResponse(reqMAC, sum string, body []byte, mac string) error {
	tag, err := hex.DecodeString(mac)
	if err != nil {
		return ErrUnauthorized
	}
	g, err := s.responseKey(reqMAC, sum)
	if err != nil {
		return err
	}
	if _, err := g.Open(nil, nil, tag, body); err != nil {
		return ErrUnauthorized
	}
	return nil
}
