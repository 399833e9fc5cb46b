package fastsha

import (
	"bytes"
	"crypto/fips140"
	"crypto/sha256"
	_ "crypto/sha512" // for TestFor's SHA-512
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func implementations(t testing.TB) []Implementation {
	impls := []Implementation{Go}
	if Available(Nettle) {
		impls = append(impls, Nettle)
	} else {
		t.Logf("Nettle is not in this build; testing Go's code only")
	}
	return impls
}

// TestMatchesStandardLibrary feeds each implementation prefixes of the
// same bytes, of lengths around block boundaries, in pieces of random
// sizes, and compares each digest with crypto/sha256's.
func TestMatchesStandardLibrary(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	for _, impl := range implementations(t) {
		t.Run(string(impl), func(t *testing.T) {
			for _, n := range []int{0, 1, 55, 56, 63, 64, 65, 119, 128, 1000, 4096, 65537, len(data)} {
				h := NewWith(impl)
				for off := 0; off < n; {
					k := min(n-off, r.IntN(9000))
					if r.IntN(8) == 0 {
						k = 0 // empty writes too
					}
					if w, err := h.Write(data[off : off+k]); w != k || err != nil {
						t.Fatalf("Write(%d bytes) = %d, %v", k, w, err)
					}
					off += k
				}
				want := sha256.Sum256(data[:n])
				if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
					t.Errorf("%d bytes: digest %x, want %x", n, got, want)
				}
			}
		})
	}
}

// TestSumKeepsState checks that Sum neither ends nor alters the hash,
// that it appends to its argument, and that Reset starts again.
func TestSumKeepsState(t *testing.T) {
	for _, impl := range implementations(t) {
		t.Run(string(impl), func(t *testing.T) {
			h := NewWith(impl)
			if h.Size() != Size || h.BlockSize() != sha256.BlockSize {
				t.Fatalf("Size, BlockSize = %d, %d", h.Size(), h.BlockSize())
			}
			h.Write([]byte("first half, "))
			first := h.Sum([]byte("prefix"))
			if !bytes.HasPrefix(first, []byte("prefix")) || len(first) != len("prefix")+Size {
				t.Fatalf("Sum did not append to its argument: %q", first)
			}
			want := sha256.Sum256([]byte("first half, "))
			if !bytes.Equal(first[len("prefix"):], want[:]) {
				t.Errorf("first Sum %x, want %x", first[len("prefix"):], want)
			}
			h.Write([]byte("second half"))
			want = sha256.Sum256([]byte("first half, second half"))
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Errorf("Sum after more writes %x, want %x", got, want)
			}
			h.Reset()
			h.Write([]byte("again"))
			want = sha256.Sum256([]byte("again"))
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Errorf("Sum after Reset %x, want %x", got, want)
			}
		})
	}
}

func TestChosen(t *testing.T) {
	c := Chosen()
	if !Available(c) {
		t.Fatalf("Chosen() = %q, which this build lacks", c)
	}
	if Chosen() != c {
		t.Fatalf("the choice changed between calls")
	}
	t.Logf("SHA-256 by %s on this machine", c)
	want := sha256.Sum256([]byte("abc"))
	h := New()
	h.Write([]byte("abc"))
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("New: digest %x, want %x", got, want)
	}
}

func TestNewWithUnknown(t *testing.T) {
	h := NewWith("none")
	h.Write([]byte("abc"))
	want := sha256.Sum256([]byte("abc"))
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Errorf("digest %x, want %x", got, want)
	}
}

// BenchmarkSHA256 hashes the same buffer with each implementation, side
// by side, in writes of the sizes the layer streams use.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 512<<10)
	for i := range buf {
		buf[i] = byte(i * 131)
	}
	b.Logf("chosen: %s", Chosen())
	for _, impl := range implementations(b) {
		for _, size := range []int{4 << 10, 512 << 10} {
			b.Run(fmt.Sprintf("%s/%dKiB", impl, size>>10), func(b *testing.B) {
				h := NewWith(impl)
				b.SetBytes(int64(size))
				for b.Loop() {
					h.Write(buf[:size])
				}
			})
		}
	}
}

func TestFor(t *testing.T) {
	for _, alg := range []digest.Algorithm{digest.SHA256, digest.SHA512} {
		h := For(alg)
		h.Write([]byte("abc"))
		if got, want := digest.NewDigest(alg, h), alg.FromString("abc"); got != want {
			t.Errorf("For(%s): %s, want %s", alg, got, want)
		}
	}
}

func TestPick(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		nettle       bool
		goT, nettleT time.Duration
		want         Implementation
	}{
		{true, 40 * ms, 10 * ms, Nettle}, // emulation: Nettle four times as fast
		{true, 10 * ms, 7 * ms, Nettle},
		{true, 10 * ms, 8 * ms, Go}, // within the margin
		{true, 10 * ms, 9 * ms, Go},
		{true, 10 * ms, 12 * ms, Go},
		{false, 40 * ms, 10 * ms, Go}, // Nettle missing or not allowed
	} {
		if got := pick(c.nettle, c.goT, c.nettleT); got != c.want {
			t.Errorf("pick(%v, %v, %v) = %s, want %s", c.nettle, c.goT, c.nettleT, got, c.want)
		}
	}
}

// TestFIPSKeepsGo runs this test binary again in FIPS 140-3 mode, where
// the choice must be Go's code whatever the timing says.
func TestFIPSKeepsGo(t *testing.T) {
	if os.Getenv("FASTSHA_FIPS_CHILD") == "1" {
		if !fips140.Enabled() {
			t.Fatal("FIPS 140-3 mode is not on in the child")
		}
		if c := Chosen(); c != Go {
			t.Fatalf("Chosen() = %q in FIPS 140-3 mode", c)
		}
		if Available(Nettle) {
			t.Fatal("Nettle is available in FIPS 140-3 mode")
		}
		if reflect.TypeOf(NewWith(Nettle)) != reflect.TypeOf(sha256.New()) {
			t.Fatal("NewWith(Nettle) gave Nettle's code in FIPS 140-3 mode")
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFIPSKeepsGo$", "-test.v")
	cmd.Env = append(os.Environ(), "GODEBUG=fips140=on", "FASTSHA_FIPS_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("--- PASS: TestFIPSKeepsGo")) {
		t.Fatalf("child in FIPS mode: %v\n%s", err, out)
	}
}
