package zlayer_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"

	"github.com/zlayer/zlayer"
)

// A layer that removes a file, edits another and adds a third, written
// from two directory trees.
func ExampleDiffDirs() {
	dir, err := os.MkdirTemp("", "zlayer-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	lower, upper := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	for _, root := range []string{lower, upper} {
		exampleCheck(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
		exampleCheck(os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("old\n"), 0o644))
		exampleCheck(os.WriteFile(filepath.Join(root, "etc", "motd"), []byte("hi\n"), 0o644))
	}
	exampleCheck(os.Remove(filepath.Join(upper, "etc", "motd")))
	hostname := filepath.Join(upper, "etc", "hostname")
	exampleCheck(os.WriteFile(hostname, []byte("new name\n"), 0o644))
	exampleCheck(os.WriteFile(filepath.Join(upper, "etc", "issue"), []byte("zlayer\n"), 0o644))

	var layer bytes.Buffer
	res, err := zlayer.DiffDirs(context.Background(), &layer, lower, upper,
		&zlayer.DiffOptions{Compression: zlayer.Uncompressed})
	if err != nil {
		log.Fatal(err)
	}

	tr := tar.NewReader(&layer)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(h.Name)
	}
	fmt.Println(res.Entries, "entries,", res.Descriptor.MediaType)
	// Output:
	// etc/
	// etc/.wh.motd
	// etc/hostname
	// etc/issue
	// 4 entries, application/vnd.oci.image.layer.v1.tar
}

func exampleCheck(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
