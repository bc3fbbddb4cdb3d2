package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Idle is the longest silence a client accepts from the daemon: a warm
// streams progress every 200 ms once it has listed the files asked for,
// and status answers at once, so a daemon silent for longer is stopped or
// stuck, and the client gives up on it instead of waiting.
const Idle = 30 * time.Second

// statusTimeout bounds a whole status request.
const statusTimeout = 10 * time.Second

var (
	// ErrNoAnswer: the daemon could not be reached or did not answer.
	ErrNoAnswer = errors.New("the daemon does not answer")
	// ErrBadReply: the daemon answered something that is not the protocol.
	ErrBadReply = errors.New("bad reply from the daemon")
)

// Client talks to the daemon listening on one control socket.
type Client struct {
	http *http.Client
}

// Dial returns a client of the daemon at socket; it connects per request.
func Dial(socket string) *Client {
	return &Client{http: &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			name, release, err := socketName(socket)
			if err != nil {
				return nil, err
			}
			defer release()
			dl := net.Dialer{Timeout: 5 * time.Second}
			c, err := dl.DialContext(ctx, "unix", name)
			if err != nil {
				return nil, err
			}
			return idleConn{c, Idle}, nil
		},
	}}}
}

func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://cachefs"+path, r)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s", ErrBadReply, resp.Status)
	}
	return resp, nil
}

// Status asks the daemon for its figures.
func (c *Client) Status(ctx context.Context) (*StatusReply, error) {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	resp, err := c.do(ctx, "GET", "/status", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r StatusReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	return &r, nil
}

// WarmStream is the daemon's progress on one warm request.
type WarmStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Warm starts a warm; read its progress with Next until a message is Done.
func (c *Client) Warm(ctx context.Context, req WarmRequest) (*WarmStream, error) {
	resp, err := c.do(ctx, "POST", "/warm", req)
	if err != nil {
		return nil, err
	}
	return &WarmStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Next returns the next progress message.
func (s *WarmStream) Next() (WarmMsg, error) {
	var m WarmMsg
	err := s.dec.Decode(&m)
	return m, err
}

func (s *WarmStream) Close() error { return s.body.Close() }

// idleConn fails a read that waits longer than idle for the daemon.
type idleConn struct {
	net.Conn
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.idle)); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}
