// Package fastsha computes SHA-256 with whichever of two implementations
// runs faster on this machine: Go's crypto/sha256 or GNU Nettle's.
//
// Both are fast where the CPU has SHA extensions. Elsewhere which one
// wins depends on the machine: under an emulator that translates vector
// instructions slowly (QEMU's TCG), where Go's code takes its AVX2 path,
// Nettle's integer code runs about four times as fast. The first
// call to New times both on the same buffer and keeps the faster one for
// the life of the process; Go's is kept unless Nettle's is clearly
// faster, and always in FIPS 140-3 mode (GODEBUG=fips140=on), where
// hashing must stay inside Go's validated module.
package fastsha

import (
	"crypto/fips140"
	"crypto/sha256"
	"hash"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// Size is the size of a SHA-256 checksum in bytes.
const Size = sha256.Size

// Implementation names the code that computes SHA-256.
type Implementation string

const (
	Go     Implementation = "go"     // crypto/sha256
	Nettle Implementation = "nettle" // GNU Nettle, through cgo
)

var choose = sync.OnceValue(func() Implementation {
	if !haveNettle || fips140.Enabled() {
		return pick(false, 0, 0)
	}
	buf := make([]byte, calibrationBytes)
	for i := range buf {
		buf[i] = byte(i*131 + i>>8)
	}
	return pick(true, fastest(sha256.New(), buf), fastest(newNettle(), buf))
})

// pick chooses from the best times of the two implementations on the
// same buffer. A margin keeps the standard library where the two are
// close and a timing of a few milliseconds could tip either way.
func pick(nettle bool, goTime, nettleTime time.Duration) Implementation {
	if nettle && nettleTime*5 < goTime*4 {
		return Nettle
	}
	return Go
}

// calibrationBytes is hashed three times by each implementation: about
// 0.2 ms in all where the CPU has SHA extensions, 9 ms under emulation.
const calibrationBytes = 64 << 10

func fastest(h hash.Hash, buf []byte) time.Duration {
	var best time.Duration
	for i := range 3 {
		start := time.Now()
		h.Write(buf)
		if d := time.Since(start); i == 0 || d < best {
			best = d
		}
	}
	return best
}

// Chosen reports the implementation New returns, choosing it first if no
// call has yet.
func Chosen() Implementation { return choose() }

// New returns a SHA-256 hash.Hash computed by the faster implementation.
func New() hash.Hash { return NewWith(choose()) }

// NewWith returns a SHA-256 hash.Hash computed by impl, or by Go's code
// when impl is not available in this build or in FIPS 140-3 mode.
func NewWith(impl Implementation) hash.Hash {
	if impl == Nettle && haveNettle && !fips140.Enabled() {
		return newNettle()
	}
	return sha256.New()
}

// Available reports whether impl can be used in this build and mode.
func Available(impl Implementation) bool {
	return impl == Go || impl == Nettle && haveNettle && !fips140.Enabled()
}

// For returns a hash computing alg: SHA-256, the algorithm of nearly every
// OCI digest, through New, and any other through the standard library.
// alg must be available (see digest.Algorithm.Available).
func For(alg digest.Algorithm) hash.Hash {
	if alg == digest.SHA256 {
		return New()
	}
	return alg.Hash()
}
