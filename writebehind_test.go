package zlayer

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// limitedWriter takes room bytes, then fails every write.
type limitedWriter struct {
	buf    bytes.Buffer
	room   int
	failed bool
	writes int // from the first that failed on, that one included
}

var errWriterFull = errors.New("writer full")

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.failed || w.buf.Len()+len(p) > w.room {
		w.failed = true
		w.writes++
		return 0, errWriterFull
	}
	return w.buf.Write(p)
}

// checkGoroutines fails t unless the goroutines come back to before
// within a second: what a call started must have ended.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	for range 100 {
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines left running, %d before", runtime.NumGoroutine(), before)
}

func TestWriteBehindCarriesEveryByte(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	want := make([]byte, 5<<20+123)
	for i := range want {
		want[i] = byte(r.Uint32())
	}
	var got bytes.Buffer
	wb := newWriteBehind(&got)
	for p := want; len(p) > 0; {
		k := min(len(p), 1+r.IntN(3*behindChunk/2))
		n, err := wb.Write(p[:k])
		if n != k || err != nil {
			t.Fatalf("Write of %d bytes: %d, %v", k, n, err)
		}
		p = p[k:]
	}
	if wb.n != int64(len(want)) {
		t.Errorf("counted %d bytes, want %d", wb.n, len(want))
	}
	if err := wb.close(true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatal("bytes out differ from bytes in")
	}
}

func TestWriteBehindStopsAtFirstError(t *testing.T) {
	dst := &limitedWriter{room: 3 * behindChunk}
	wb := newWriteBehind(dst)
	if err := writeUntilError(wb); !errors.Is(err, errWriterFull) {
		t.Fatalf("Write: %v, want %v", err, errWriterFull)
	}
	if err := wb.close(true); !errors.Is(err, errWriterFull) {
		t.Fatalf("close: %v, want %v", err, errWriterFull)
	}
	if dst.buf.Len() != 3*behindChunk || dst.writes != 1 {
		t.Errorf("writer took %d bytes and saw %d writes after failing; want %d and 1",
			dst.buf.Len(), dst.writes, 3*behindChunk)
	}
}

// close without flush lets the write in progress end and drops the rest:
// the chunks queued behind it and the one being filled.
func TestWriteBehindCloseWithoutFlushDrops(t *testing.T) {
	started, release := make(chan struct{}, 3), make(chan struct{})
	var got bytes.Buffer
	wb := newWriteBehind(writerFunc(func(p []byte) (int, error) {
		started <- struct{}{}
		<-release
		return got.Write(p)
	}))
	if _, err := wb.Write(make([]byte, 2*behindChunk+10)); err != nil {
		t.Fatal(err)
	}
	<-started
	closed := make(chan error)
	go func() { closed <- wb.close(false) }()
	for !wb.drop.Load() {
		time.Sleep(time.Millisecond)
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if got.Len() != behindChunk {
		t.Errorf("writer got %d bytes, want the chunk it was writing, %d", got.Len(), behindChunk)
	}
}

func TestWriteBehindPanicEndsTheStage(t *testing.T) {
	before := runtime.NumGoroutine()
	wb := newWriteBehind(writerFunc(func([]byte) (int, error) { panic("boom") }))
	if err := writeUntilError(wb); !errors.Is(err, errStagePanicked) {
		t.Fatalf("Write: %v, want %v", err, errStagePanicked)
	}
	if err := wb.close(true); !errors.Is(err, errStagePanicked) || wb.panic != "boom" {
		t.Fatalf("close: %v, panic %v; want %v and boom", err, wb.panic, errStagePanicked)
	}
	checkGoroutines(t, before)
}

// writeUntilError writes whole chunks to wb until a write fails, up to
// 100 of them, and returns the failure.
func writeUntilError(wb *writeBehind) error {
	chunk := bytes.Repeat([]byte{'x'}, behindChunk)
	for range 100 {
		if _, err := wb.Write(chunk); err != nil {
			return err
		}
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
