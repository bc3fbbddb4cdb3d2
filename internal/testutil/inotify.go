// Package testutil holds helpers that the tests of more than one package
// share. Only _test.go files import it: nothing in the product depends on
// it.
//
// Invariants: a helper that cannot tell what it was asked (a watch that
// overflowed, a read that failed) fails the test instead of answering 0,
// so that a check built on it cannot pass for want of data.
package testutil

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Event is one inotify event: what happened and the name of the entry it
// happened to (empty for the watched directory itself).
type Event struct {
	Mask uint32
	Name string
}

// Watch starts an inotify watch of dir for the events in mask and returns
// a function that hands back, in order, the events queued since its last
// call. inotify queues an event before the system call that caused it
// returns, so events of calls already made are never missed.
func Watch(t testing.TB, dir string, mask uint32) func() []Event {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	return func() []Event {
		t.Helper()
		var evs []Event
		for {
			got, err := unix.Read(fd, buf)
			if errors.Is(err, unix.EAGAIN) {
				return evs
			}
			if err != nil || got <= 0 {
				t.Errorf("reading inotify events of %s: %d %v", dir, got, err)
				return evs
			}
			evs = append(evs, parse(t, buf[:got])...)
		}
	}
}

// parse decodes the events in one read's worth of bytes.
func parse(t testing.TB, buf []byte) []Event {
	t.Helper()
	var evs []Event
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			t.Errorf("the inotify queue overflowed: events were lost")
		}
		name := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
		evs = append(evs, Event{Mask: ev.Mask, Name: string(bytes.TrimRight(name, "\x00"))})
		off += unix.SizeofInotifyEvent + int(ev.Len)
	}
	return evs
}

// WatchOpens counts the opens, by any process, of dir and of the entries
// in it: the function it returns gives the number since its last call.
func WatchOpens(t testing.TB, dir string) func() int {
	t.Helper()
	events := Watch(t, dir, unix.IN_OPEN)
	return func() int {
		t.Helper()
		n := 0
		for _, ev := range events() {
			if ev.Mask&unix.IN_OPEN != 0 {
				n++
			}
		}
		return n
	}
}
