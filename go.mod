module github.com/zlayer/zlayer

go 1.26.0

require github.com/opencontainers/image-spec v1.1.1

require (
	github.com/bicomsystems/go-libzfs v0.4.0 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.20.5 // indirect
	github.com/moby/sys/mountinfo v0.7.3 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
