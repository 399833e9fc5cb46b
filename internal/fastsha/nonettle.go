//go:build !(cgo && linux)

package fastsha

import "hash"

const haveNettle = false

func newNettle() hash.Hash { panic("fastsha: built without Nettle") }
