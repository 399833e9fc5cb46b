// Package tartest builds tar streams for tests from declared entries:
// files, directories, links, devices, whiteouts, sparse files, and the
// malformed ones a hostile layer holds (lying sizes, raw blocks, a missing
// end-of-archive marker).
package tartest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"path"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/zlayer/zlayer/internal/fstree"
)

// Epoch is the modification time entries get by default, the same as
// fstree's builders.
var Epoch = fstree.Epoch

// Entry is one tar entry with its content.
type Entry struct {
	Header tar.Header
	Body   []byte

	sparse   []Fragment // data of a sparse file, Header.Size its logical size
	lie      bool       // the header claims declared bytes, not the true size
	declared int64
	raw      []byte // bytes put in the stream as they are
}

// Opt adjusts an entry.
type Opt func(*Entry)

// Mode sets the permission bits, setuid, setgid and sticky included.
func Mode(m int64) Opt { return func(e *Entry) { e.Header.Mode = m } }

// Owner sets the numeric owner.
func Owner(uid, gid int) Opt { return func(e *Entry) { e.Header.Uid, e.Header.Gid = uid, gid } }

// ModTime sets the modification time; one with a fraction of a second
// needs a PAX header, which it asks for.
func ModTime(t time.Time) Opt {
	return func(e *Entry) {
		e.Header.ModTime = t
		if t.Nanosecond() != 0 {
			e.Header.Format = tar.FormatPAX
		}
	}
}

// Xattr adds an extended attribute as a SCHILY.xattr PAX record.
func Xattr(name, value string) Opt {
	return PAX("SCHILY.xattr."+name, value)
}

// PAX adds a PAX record.
func PAX(key, value string) Opt {
	return func(e *Entry) {
		if e.Header.PAXRecords == nil {
			e.Header.PAXRecords = make(map[string]string)
		}
		e.Header.PAXRecords[key] = value
		e.Header.Format = tar.FormatPAX
	}
}

// Format forces a header format, such as tar.FormatGNU for long or
// non-UTF-8 names without PAX records.
func Format(f tar.Format) Opt { return func(e *Entry) { e.Header.Format = f } }

// Typeflag overrides the entry's type.
func Typeflag(t byte) Opt { return func(e *Entry) { e.Header.Typeflag = t } }

// Device sets the device numbers, for any type.
func Device(major, minor int64) Opt {
	return func(e *Entry) { e.Header.Devmajor, e.Header.Devminor = major, minor }
}

// DeclaredSize makes the header claim size bytes while the stream holds
// the true content: a header whose size lies. It needs a ustar header.
func DeclaredSize(size int64) Opt {
	return func(e *Entry) { e.lie, e.declared = true, size; e.Header.Format = tar.FormatUSTAR }
}

func entry(name string, typ byte, mode int64, opts []Opt) Entry {
	e := Entry{Header: tar.Header{
		Name: name, Typeflag: typ, Mode: mode, ModTime: Epoch,
	}}
	for _, o := range opts {
		o(&e)
	}
	return e
}

// File is a regular file, mode 0644 unless set.
func File(name, body string, opts ...Opt) Entry {
	e := entry(name, tar.TypeReg, 0o644, opts)
	e.Body = []byte(body)
	e.Header.Size = int64(len(body))
	return e
}

// Dir is a directory, mode 0755 unless set.
func Dir(name string, opts ...Opt) Entry {
	return entry(name, tar.TypeDir, 0o755, opts)
}

// Symlink is a symbolic link to target.
func Symlink(name, target string, opts ...Opt) Entry {
	e := entry(name, tar.TypeSymlink, 0o777, opts)
	e.Header.Linkname = target
	return e
}

// Link is a hard link to target, a name in the same tar.
func Link(name, target string, opts ...Opt) Entry {
	e := entry(name, tar.TypeLink, 0o644, opts)
	e.Header.Linkname = target
	return e
}

// Char is a character device.
func Char(name string, major, minor int64, opts ...Opt) Entry {
	return entry(name, tar.TypeChar, 0o666, append([]Opt{Device(major, minor)}, opts...))
}

// Block is a block device.
func Block(name string, major, minor int64, opts ...Opt) Entry {
	return entry(name, tar.TypeBlock, 0o660, append([]Opt{Device(major, minor)}, opts...))
}

// Fifo is a named pipe.
func Fifo(name string, opts ...Opt) Entry {
	return entry(name, tar.TypeFifo, 0o644, opts)
}

// Whiteout deletes name, in dir, from the layers below.
func Whiteout(dir, name string) Entry {
	return File(path.Join(dir, ".wh."+name), "")
}

// Opaque hides the layers below dir.
func Opaque(dir string) Entry {
	return File(path.Join(dir, ".wh..wh..opq"), "")
}

// Fragment is a run of data in a sparse file.
type Fragment struct {
	Offset int64
	Data   string
}

// Sparse is a sparse regular file of size bytes holding the fragments and
// holes elsewhere, in the GNU PAX 1.0 sparse format (as GNU tar --sparse
// writes it, which Go's writer cannot).
func Sparse(name string, size int64, frags []Fragment, opts ...Opt) Entry {
	e := entry(name, tar.TypeReg, 0o644, opts)
	e.Header.Size = size
	e.sparse = slices.Clone(frags)
	return e
}

// Raw puts bytes in the stream as they are, where an entry would be.
func Raw(b []byte) Entry {
	return Entry{raw: b}
}

// Layer is a list of entries, written in order.
type Layer []Entry

// Tar writes the layer as a tar stream with its end-of-archive marker.
func (l Layer) Tar() []byte {
	b, err := l.write(true)
	if err != nil {
		panic(err)
	}
	return b
}

// TarNoEnd writes the layer without the end-of-archive marker, as a stream
// cut between two entries looks.
func (l Layer) TarNoEnd() []byte {
	b, err := l.write(false)
	if err != nil {
		panic(err)
	}
	return b
}

func (l Layer) write(end bool) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range l {
		if err := tw.Flush(); err != nil {
			return nil, err
		}
		switch {
		case e.raw != nil:
			buf.Write(e.raw)
			continue
		case e.sparse != nil:
			if err := writeSparse(&buf, tw, e); err != nil {
				return nil, err
			}
			continue
		}
		hdr := e.Header
		if err := tw.WriteHeader(&hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", hdr.Name, err)
		}
		at := buf.Len() - blockSize
		if _, err := tw.Write(e.Body); err != nil {
			return nil, fmt.Errorf("%s: %w", hdr.Name, err)
		}
		if e.lie {
			setSize(buf.Bytes()[at:at+blockSize], e.declared)
		}
	}
	if err := tw.Flush(); err != nil {
		return nil, err
	}
	if end {
		buf.Write(make([]byte, 2*blockSize))
	}
	return buf.Bytes(), nil
}

const blockSize = 512

// writeSparse writes a PAX 1.0 sparse entry: a PAX header naming the real
// file and size, then a ustar header whose data is the sparse map in
// decimal lines, padded to a block, followed by the fragments.
func writeSparse(buf *bytes.Buffer, tw *tar.Writer, e Entry) error {
	var recs bytes.Buffer
	for _, kv := range [][2]string{
		{"GNU.sparse.major", "1"}, {"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", e.Header.Name},
		{"GNU.sparse.realsize", strconv.FormatInt(e.Header.Size, 10)},
	} {
		recs.WriteString(paxRecord(kv[0], kv[1]))
	}
	buf.Write(rawHeader("PaxHeaders/"+path.Base(e.Header.Name), tar.TypeXHeader,
		int64(recs.Len()), e.Header))
	buf.Write(pad(recs.Bytes()))

	sm := strconv.Itoa(len(e.sparse)) + "\n"
	var data []byte
	for _, f := range e.sparse {
		sm += fmt.Sprintf("%d\n%d\n", f.Offset, len(f.Data))
		data = append(data, f.Data...)
	}
	body := append(pad([]byte(sm)), data...)
	hdr := e.Header
	hdr.Name = path.Join(path.Dir(e.Header.Name), "GNUSparseFile.0", path.Base(e.Header.Name))
	hdr.Size = int64(len(body))
	hdr.Format = tar.FormatUSTAR
	hdr.PAXRecords = nil
	if err := tw.WriteHeader(&hdr); err != nil {
		return err
	}
	_, err := tw.Write(body)
	return err
}

// paxRecord formats "LEN key=value\n", LEN counting itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for {
		s := strconv.Itoa(n) + " " + k + "=" + v + "\n"
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

func pad(b []byte) []byte {
	if r := len(b) % blockSize; r != 0 {
		b = append(b, make([]byte, blockSize-r)...)
	}
	return b
}

// rawHeader encodes a ustar header block by hand, for the types Go's
// writer will not write.
func rawHeader(name string, typ byte, size int64, like tar.Header) []byte {
	b := make([]byte, blockSize)
	copy(b[0:100], name)
	octal(b[100:108], like.Mode)
	octal(b[108:116], int64(like.Uid))
	octal(b[116:124], int64(like.Gid))
	octal(b[124:136], size)
	octal(b[136:148], like.ModTime.Unix())
	b[156] = typ
	copy(b[257:265], "ustar\x0000")
	checksum(b)
	return b
}

func octal(field []byte, v int64) {
	s := strconv.FormatInt(v, 8)
	for len(s) < len(field)-1 {
		s = "0" + s
	}
	copy(field, s)
	field[len(field)-1] = 0
}

func checksum(b []byte) {
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	octal(b[148:155], sum)
	b[155] = ' '
}

// setSize rewrites the size of a ustar header block and its checksum.
func setSize(b []byte, size int64) {
	octal(b[124:136], size)
	checksum(b)
}

// Gzip compresses a stream with gzip.
func Gzip(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// Zstd compresses a stream with zstd.
func Zstd(b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		panic(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}
