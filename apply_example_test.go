package zlayer_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/zlayer/zlayer"
)

// ExampleApplyDir applies a downloaded layer blob onto the directory that
// holds the layers below it, checking the blob against the digests of
// the image manifest and config. It is compiled, not run: it needs root.
func ExampleApplyDir() {
	blob, err := os.Open("/var/cache/layers/blob")
	if err != nil {
		log.Fatal(err)
	}
	defer blob.Close()

	res, err := zlayer.ApplyDir(context.Background(), "/mnt/layer", blob, &zlayer.ApplyOptions{
		ExpectedDigest: digest.Digest("sha256:" +
			"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"),
		ExpectedDiffID: digest.Digest("sha256:" +
			"fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9"),
		Progress: func(p zlayer.ApplyProgress) {
			fmt.Printf("\r%d entries, %d bytes", p.Entries, p.Bytes)
		},
	})
	if err != nil {
		// The directory holds part of the layer: roll it back.
		log.Fatal(err)
	}
	fmt.Println(res.MediaType, res.DiffID, res.Entries)
}
