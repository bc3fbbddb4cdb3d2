package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// Handler is what a daemon offers its control socket.
type Handler interface {
	Status() StatusReply
	// Warm fetches what req names, calling send with progress and, last,
	// with a message whose Done is set. ctx ends when the client goes.
	Warm(ctx context.Context, req WarmRequest, send func(WarmMsg))
}

// Serve listens on socket and answers with h until stop is called. A socket
// left there by a killed daemon is replaced: the caller holds the cache
// directory's lock, which proves no live daemon owns it.
func Serve(socket string, h Handler, log zerolog.Logger) (stop func(), err error) {
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control: %w", err)
	}
	ln, err := listen(socket)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(h.Status()); err != nil {
			log.Debug().Err(err).Msg("control: status reply not delivered")
		}
	})
	mux.HandleFunc("POST /warm", func(w http.ResponseWriter, r *http.Request) { serveWarm(w, r, h, log) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn().Err(err).Msg("control socket stopped: status and warm no longer reach this mount")
		}
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Debug().Err(err).Msg("control: shutdown cut requests short")
		}
		if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Debug().Err(err).Msg("control: socket not removed")
		}
	}, nil
}

// listen binds the socket at path, whatever its length, mode 0600.
func listen(path string) (net.Listener, error) {
	name, release, err := socketName(path)
	if err != nil {
		return nil, err
	}
	defer release()
	ln, err := net.Listen("unix", name)
	if err != nil {
		return nil, err
	}
	// The listener would unlink its bound name on close, and a
	// /proc/self/fd name may point elsewhere by then: stop removes path.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

func serveWarm(w http.ResponseWriter, r *http.Request, h Handler, log zerolog.Logger) {
	var req WarmRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	enc := json.NewEncoder(w)
	h.Warm(r.Context(), req, func(m WarmMsg) {
		if err := enc.Encode(m); err != nil {
			// The client went; the handler's context says so too.
			log.Debug().Err(err).Msg("control: warm progress not delivered")
			return
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	})
}
