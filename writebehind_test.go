package zlayer

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// limitedWriter takes room bytes, then fails every write.
type limitedWriter struct {
	buf    bytes.Buffer
	room   int
	writes int // after the failure
}

var errWriterFull = errors.New("writer full")

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.room {
		w.writes++
		return 0, errWriterFull
	}
	return w.buf.Write(p)
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
	chunk := bytes.Repeat([]byte{'x'}, behindChunk)
	var err error
	for range 100 {
		if _, err = wb.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, errWriterFull) {
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

func TestWriteBehindCloseWithoutFlushDrops(t *testing.T) {
	var got bytes.Buffer
	wb := newWriteBehind(&got)
	if _, err := wb.Write(make([]byte, behindChunk+10)); err != nil {
		t.Fatal(err)
	}
	if err := wb.close(false); err != nil {
		t.Fatal(err)
	}
	if got.Len() != behindChunk {
		t.Errorf("writer got %d bytes, want the one full chunk, %d", got.Len(), behindChunk)
	}
}
