package snapshot

import "time"

// Counts is a reading of a Progress.
type Counts struct {
	Entries, Dirs, Bytes, Errors int64
}

// Counts reads the counters.
func (p *Progress) Counts() Counts {
	return Counts{p.Entries.Load(), p.Dirs.Load(), p.Bytes.Load(), p.Errors.Load()}
}

// Watch calls report with the counters at every tick of every until stop
// is called; stop returns only after the last report, so nothing the
// caller writes next can interleave with one.
func (p *Progress) Watch(every time.Duration, report func(Counts)) (stop func()) {
	tick := time.NewTicker(every)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				report(p.Counts())
			}
		}
	}()
	return func() {
		tick.Stop()
		close(done)
		<-stopped
	}
}
