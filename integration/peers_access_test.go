package integration

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// signedBlockRequest asks addr for a block as a peer holding secret would,
// following the wire format of package peer.
func signedBlockRequest(t *testing.T, addr, q string, secret []byte) (int, []byte) {
	t.Helper()
	var n [16]byte
	rand.Read(n[:])
	ts, nonce := strconv.FormatInt(time.Now().UnixNano(), 10), hex.EncodeToString(n[:])
	h := hmac.New(sha256.New, secret)
	for _, p := range []string{"cachefs-peer-request-v1", ts, nonce, q} {
		h.Write([]byte(p + "\n"))
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/block?"+q, nil)
	req.Header.Set("X-Cachefs-Time", ts)
	req.Header.Set("X-Cachefs-Nonce", nonce)
	req.Header.Set("X-Cachefs-Auth", hex.EncodeToString(h.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// A job's daemons run as an ordinary user; a peer of the job, holding its
// secret, asks them for a file of root's that the user cannot read (but
// whose entry the user's walk saw): it gets nothing, while a readable file
// of the same directory is served.
func TestPeerServesNothingItsUserCannotRead(t *testing.T) {
	userFUSE(t)
	_, cred := newUser(t, "peerjob")
	base := traversableDir(t, "cachefs-peers-")
	src := filepath.Join(base, "src")
	os.Mkdir(src, 0o755)
	data := make([]byte, 3<<20)
	rand.Read(data)
	for name, mode := range map[string]os.FileMode{"pub.bin": 0o644, "private.bin": 0o600} {
		if err := os.WriteFile(filepath.Join(src, name), data, mode); err != nil {
			t.Fatal(err)
		}
	}
	home, job := filepath.Join(base, "home"), filepath.Join(base, "job")
	for _, d := range []string{home, job} {
		os.Mkdir(d, 0o700)
		os.Chown(d, int(cred.Uid), int(cred.Gid))
	}
	port := freePort(t, "127.0.0.2")
	addrs := []string{net.JoinHostPort("127.0.0.2", port), net.JoinHostPort("127.0.0.3", port)}
	e := &env{t: t, tmp: home, cred: cred}
	secretFile := filepath.Join(job, "peer.secret")
	for i, addr := range addrs {
		mnt := filepath.Join(home, "mnt"+strconv.Itoa(i))
		os.Mkdir(mnt, 0o755)
		os.Chown(mnt, int(cred.Uid), int(cred.Gid))
		e.mount(src, mnt, "--cache-dir", filepath.Join(home, "cache"+strconv.Itoa(i)),
			"--peers", strings.Join(addrs, ","), "--listen", addr, "--peer-secret-file", secretFile)
		t.Cleanup(func() {
			if isMounted(mnt) {
				e.run("unmount", mnt)
			}
		})
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	secret = []byte(strings.TrimSpace(string(secret)))
	served := map[string]int{}
	for _, name := range []string{"pub.bin", "private.bin"} {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(src, name), &st); err != nil {
			t.Fatal(err)
		}
		for b := range 3 {
			q := "p=" + name + "&i=" + strconv.FormatUint(st.Ino, 10) + "&s=" + strconv.FormatInt(st.Size, 10) +
				"&m=" + strconv.FormatInt(st.Mtim.Nano(), 10) + "&b=" + strconv.Itoa(b) + "&bs=1048576"
			for _, addr := range addrs {
				code, body := signedBlockRequest(t, addr, q, secret)
				if code == http.StatusOK {
					served[name]++
				} else if len(body) != 0 && code != http.StatusBadRequest {
					t.Errorf("%s block %d from %s: status %d with %d bytes", name, b, addr, code, len(body))
				}
			}
		}
	}
	if served["private.bin"] != 0 {
		t.Errorf("served %d blocks of a file the daemons' user cannot read", served["private.bin"])
	}
	if served["pub.bin"] != 3 {
		t.Errorf("served %d of the 3 blocks of a readable file, want each by its owner", served["pub.bin"])
	}
}
