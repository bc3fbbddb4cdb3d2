package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

type fakeDaemon struct{}

func (fakeDaemon) Status() StatusReply { return StatusReply{Pid: 42, Mountpoint: "/m"} }

func (fakeDaemon) Warm(ctx context.Context, req WarmRequest, send func(WarmMsg)) {
	send(WarmMsg{FilesDone: 1, FilesTotal: int64(len(req.Paths))})
	send(WarmMsg{FilesDone: 2, FilesTotal: int64(len(req.Paths)), Done: true})
}

func TestServeAndDial(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	// A socket left by a killed daemon is replaced.
	if err := os.WriteFile(sock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	stop, err := Serve(sock, fakeDaemon{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	c := Dial(sock)
	ctx := context.Background()
	r, err := c.Status(ctx)
	if err != nil || r.Pid != 42 || r.Mountpoint != "/m" {
		t.Fatalf("Status = %+v, %v", r, err)
	}
	ws, err := c.Warm(ctx, WarmRequest{Paths: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	var last WarmMsg
	for !last.Done {
		if last, err = ws.Next(); err != nil {
			t.Fatal(err)
		}
	}
	if last.FilesDone != 2 || last.FilesTotal != 2 {
		t.Errorf("last warm message %+v", last)
	}
}

func TestDialNobody(t *testing.T) {
	c := Dial(filepath.Join(t.TempDir(), "control.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Status(ctx); !errors.Is(err, ErrNoAnswer) {
		t.Errorf("Status with no daemon: %v, want ErrNoAnswer", err)
	}
}

func TestRecords(t *testing.T) {
	d := RuntimeDir{Parent: t.TempDir(), Names: []string{"cachefs-test", "run"}}
	rec := &Record{Pid: 7, Mountpoint: "/mnt/x y", CacheDir: "/c", Writable: &WritableRecord{Kind: "overlay", Dir: "/c/writable", Lower: "/c/writable/lower", Upper: "/c/writable/upper"}}
	if err := d.Write(rec); err != nil {
		t.Fatal(err)
	}
	got, err := d.Read("/mnt/x y")
	if err != nil || got.Pid != 7 || got.CacheDir != "/c" {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	if got.Writable == nil || *got.Writable != *rec.Writable {
		t.Errorf("the writable view's layers did not survive the record: %+v", got.Writable)
	}
	if files, err := d.List(); err != nil || len(files) != 1 || files[0] != d.RecordPath("/mnt/x y") {
		t.Errorf("List = %v, %v", files, err)
	}
	if _, err := d.Read("/other"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of no record: %v, want ErrNotExist", err)
	}
}
