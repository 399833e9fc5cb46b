package main

import (
	"fmt"
	"io"
	"time"

	"github.com/zlayer/zlayer"
)

// progressEvery is the least time between two progress lines of a layer.
const progressEvery = 500 * time.Millisecond

// progress prints how far long work has come, a few lines a second at
// most. A nil *progress, or one without a writer, prints nothing.
type progress struct {
	w   io.Writer
	now func() time.Time
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, now: time.Now}
}

// layerProgress follows one layer's apply.
type layerProgress struct {
	p     *progress
	what  string
	blob  int64
	start time.Time
	last  time.Time
}

// start begins a layer whose blob has blobSize bytes.
func (p *progress) start(what string, blobSize int64) *layerProgress {
	if p == nil || p.w == nil {
		return nil
	}
	t := p.now()
	return &layerProgress{p: p, what: what, blob: blobSize, start: t, last: t}
}

// update takes Apply's progress reports, printing one now and then.
func (l *layerProgress) update(ap zlayer.ApplyProgress) { l.tick(ap.Bytes, ap.Entries) }

// diffUpdate takes Diff's progress reports, printing one now and then.
func (l *layerProgress) diffUpdate(dp zlayer.DiffProgress) { l.tick(dp.Bytes, dp.Entries) }

func (l *layerProgress) tick(n, entries int64) {
	if l == nil {
		return
	}
	t := l.p.now()
	if t.Sub(l.last) < progressEvery {
		return
	}
	l.last = t
	fmt.Fprintf(l.p.w, "%s: %s, %d entries, %s/s\n", l.what, size(uint64(n)), entries,
		size(uint64(rate(n, t.Sub(l.start)))))
}

// finished returns the time since the start, and false when there is
// nothing more to print: no progress wanted, or err, which it reports.
func (l *layerProgress) finished(err error) (time.Duration, bool) {
	if l == nil {
		return 0, false
	}
	el := l.p.now().Sub(l.start)
	if err != nil {
		fmt.Fprintf(l.p.w, "%s: failed after %s\n", l.what, el.Round(time.Millisecond))
		return el, false
	}
	return el, true
}

// diffDone prints a diff's outcome.
func (l *layerProgress) diffDone(res zlayer.DiffResult, err error) {
	el, ok := l.finished(err)
	if !ok {
		return
	}
	fmt.Fprintf(l.p.w, "%s: done, %s in %d entries, %s\n", l.what,
		size(uint64(res.Descriptor.Size)), res.Entries, el.Round(time.Millisecond))
}

// done prints the layer's outcome.
func (l *layerProgress) done(res zlayer.ApplyResult, err error) {
	el, ok := l.finished(err)
	if !ok {
		return
	}
	fmt.Fprintf(l.p.w, "%s: done, %s (%s %s) in %d entries, %s, %s/s\n", l.what,
		size(uint64(res.UncompressedSize)), size(uint64(res.Size)), res.Compression, res.Entries,
		el.Round(time.Millisecond), size(uint64(rate(res.UncompressedSize, el))))
}

func rate(n int64, d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64(float64(n) / d.Seconds())
}

// size formats a byte count.
func size(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
