package zlayer

import (
	"errors"
	"io"
	"sync/atomic"
)

// Chunks of this size, this many to a stage, carry a layer's tar from one
// stage of its output to the next.
const (
	behindChunk  = 256 << 10
	behindChunks = 4
)

// writeBehind is one stage of a pipeline: what is written to it is copied
// into chunks that a goroutine of its own writes on to dst, so that the
// writer and dst (a digest, a compressor, the caller's writer) work side
// by side. It holds at most behindChunks chunks.
//
// The first error of dst is returned by every later Write and by close;
// dst sees nothing more after it. A panic in dst ends the stage as an
// error, and close keeps what it panicked with in panic for its owner to
// raise again. close must be called, on success and on failure alike: it
// ends the goroutine.
type writeBehind struct {
	dst    io.Writer
	full   chan []byte // for the goroutine to write
	free   chan []byte // written, for Write to fill again
	failed chan struct{}
	done   chan struct{}
	drop   atomic.Bool // set by close without flush: write nothing more
	err    error       // dst's; set by the goroutine before failed or done closes
	panic  any         // what dst panicked with, likewise

	cur []byte // being filled
	n   int64  // bytes accepted by Write
}

var errStagePanicked = errors.New("layer output stage panicked")

func newWriteBehind(dst io.Writer) *writeBehind {
	wb := &writeBehind{
		dst:    dst,
		full:   make(chan []byte, behindChunks),
		free:   make(chan []byte, behindChunks),
		failed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	for range behindChunks {
		wb.free <- make([]byte, 0, behindChunk)
	}
	go wb.run()
	return wb
}

func (wb *writeBehind) run() {
	defer close(wb.done)
	defer func() {
		if p := recover(); p != nil {
			wb.panic = p
			wb.fail(errStagePanicked)
			for c := range wb.full { // so that Write and close never block
				wb.free <- c[:0]
			}
		}
	}()
	for c := range wb.full {
		if wb.err == nil && !wb.drop.Load() {
			if _, err := wb.dst.Write(c); err != nil {
				wb.fail(err)
			}
		}
		wb.free <- c[:0]
	}
}

// fail records dst's first error; only the goroutine calls it.
func (wb *writeBehind) fail(err error) {
	if wb.err == nil {
		wb.err = err
		close(wb.failed)
	}
}

func (wb *writeBehind) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		select {
		case <-wb.failed:
			return n, wb.err
		default:
		}
		if wb.cur == nil {
			wb.cur = <-wb.free
		}
		k := copy(wb.cur[len(wb.cur):cap(wb.cur)], p)
		wb.cur = wb.cur[:len(wb.cur)+k]
		p = p[k:]
		n += k
		wb.n += int64(k)
		if len(wb.cur) == cap(wb.cur) {
			wb.full <- wb.cur
			wb.cur = nil
		}
	}
	return n, nil
}

// close ends the stage and returns dst's first error. With flush, all
// that was written goes on to dst; without, nothing more reaches dst,
// chunks already handed on included. It is called once.
func (wb *writeBehind) close(flush bool) error {
	if !flush {
		wb.drop.Store(true)
	} else if len(wb.cur) > 0 {
		wb.full <- wb.cur
	}
	wb.cur = nil
	close(wb.full)
	<-wb.done
	return wb.err
}
