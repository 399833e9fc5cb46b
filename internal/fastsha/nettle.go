//go:build cgo && linux

package fastsha

/*
#cgo LDFLAGS: -lnettle
#include <nettle/sha2.h>
*/
import "C"

import (
	"hash"
	"unsafe"
)

const haveNettle = true

// nettleDigest is a SHA-256 state in Go memory, which Nettle works on in
// place; it holds no Go pointers, so cgo lets it be passed.
type nettleDigest struct {
	ctx C.struct_sha256_ctx
}

func newNettle() hash.Hash {
	d := new(nettleDigest)
	d.Reset()
	return d
}

func (d *nettleDigest) Reset() { C.nettle_sha256_init(&d.ctx) }

func (d *nettleDigest) Size() int { return Size }

func (d *nettleDigest) BlockSize() int { return C.SHA256_BLOCK_SIZE }

func (d *nettleDigest) Write(p []byte) (int, error) {
	if len(p) > 0 {
		C.nettle_sha256_update(&d.ctx, C.size_t(len(p)), (*C.uint8_t)(unsafe.Pointer(&p[0])))
	}
	return len(p), nil
}

// Sum appends the digest of what was written to b. Nettle's digest call
// resets the state it finishes, so it finishes a copy.
func (d *nettleDigest) Sum(b []byte) []byte {
	c := d.ctx
	var sum [Size]byte
	C.nettle_sha256_digest(&c, Size, (*C.uint8_t)(&sum[0]))
	return append(b, sum[:]...)
}
