module github.com/zlayer/zlayer

go 1.26.0

require (
	github.com/bicomsystems/go-libzfs v0.4.0
	github.com/google/go-cmp v0.7.0
	github.com/klauspost/compress v1.20.5
	github.com/moby/sys/mountinfo v0.7.3
	github.com/opencontainers/go-digest v1.0.0
	github.com/opencontainers/image-spec v1.1.1
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
)
