package zfsdiff

import (
	"bufio"
	"errors"
	"io"
	"iter"
	"strconv"
	"strings"
	"time"
)

// MaxLine is the longest line the reader accepts, newline included. A
// rename names two paths of up to MAXPATHLEN (4096) bytes each, under a
// mountpoint of up to the same length, and every byte may take five once
// escaped: 128 KiB holds the worst case with room to spare.
const MaxLine = 128 << 10

// onDeleteQueue is what libzfs prints, after the mountpoint, for an object
// that was unlinked while still open: it has no path any more.
const onDeleteQueue = "(on_delete_queue)"

// xattrDir is the path component libzfs prints for the hidden directory
// that holds an object's extended attributes on a dataset with xattr=dir.
const xattrDir = "<xattrdir>"

// Reader reads entries from a zfs_show_diffs stream.
//
// Whether the stream carries timestamps and type characters is read from
// its first record; every later record must have the same shape. Records
// for objects on the delete queue (unlinked while open, with no path) are
// skipped.
type Reader struct {
	br    *bufio.Reader
	mount string
	line  int
	err   error

	shape    shape
	shapeSet bool
}

type shape struct {
	timed, classified bool
}

// NewReader returns a Reader of the stream r, whose paths begin with
// mountpoint, the dataset's mountpoint as libzfs printed it before escaping
// ("/" for a dataset mounted at the root).
func NewReader(r io.Reader, mountpoint string) *Reader {
	return &Reader{
		br:    bufio.NewReaderSize(r, MaxLine),
		mount: strings.TrimRight(mountpoint, "/"),
	}
}

// Next returns the next entry, or io.EOF after the last one. Any other
// error is final: later calls return it again. A malformed line gives a
// *LineError that wraps ErrSyntax.
func (r *Reader) Next() (Entry, error) {
	for r.err == nil {
		text, err := r.readLine()
		if err != nil {
			r.err = err
			break
		}
		e, skip, err := r.parse(text)
		if err != nil {
			r.err = r.lineErr(text, err)
			break
		}
		if !skip {
			return e, nil
		}
	}
	return Entry{}, r.err
}

// All returns the entries of the stream r as an iterator. It stops after
// the first error, which it yields with a zero Entry.
func All(r io.Reader, mountpoint string) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		zr := NewReader(r, mountpoint)
		for {
			e, err := zr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if !yield(e, err) || err != nil {
				return
			}
		}
	}
}

func (r *Reader) readLine() (string, error) {
	b, err := r.br.ReadSlice('\n')
	if len(b) > 0 {
		r.line++
	}
	switch {
	case errors.Is(err, bufio.ErrBufferFull):
		return "", r.lineErr(string(b), syntaxErr("line longer than %d bytes", MaxLine))
	case errors.Is(err, io.EOF) && len(b) > 0:
		// libzfs ends every record with a newline: a last line without
		// one is a stream cut short, not a record to trust.
		return "", r.lineErr(string(b), syntaxErr("last line has no newline"))
	case err != nil:
		return "", err
	}
	return string(b[:len(b)-1]), nil
}

func (r *Reader) lineErr(text string, err error) error {
	const maxText = 120
	if len(text) > maxText {
		text = text[:maxText] + "..."
	}
	return &LineError{Line: r.line, Text: text, Err: err}
}

// parse reads one line. skip reports a record with no path to give.
func (r *Reader) parse(text string) (e Entry, skip bool, err error) {
	if text == "" {
		return e, false, syntaxErr("empty line")
	}
	fields := strings.Split(text, "\t")
	sh := detect(fields)
	if r.shapeSet && sh != r.shape {
		return e, false, syntaxErr("fields differ from the first record's")
	}
	r.shape, r.shapeSet = sh, true

	if sh.timed {
		if e.Time, err = parseTime(fields[0]); err != nil {
			return e, false, err
		}
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return e, false, syntaxErr("no change after the timestamp")
	}
	if len(fields[0]) != 1 || strings.IndexByte("+-MR", fields[0][0]) < 0 {
		return e, false, syntaxErr("unknown change %q", fields[0])
	}
	e.Kind = Kind(fields[0][0])
	fields = fields[1:]
	if sh.classified {
		e.Type = Type(fields[0][0])
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return e, false, syntaxErr("no path")
	}

	switch e.Kind {
	case Renamed:
		return r.parseRename(e, fields)
	case Modified:
		if len(fields) == 2 {
			if e.LinkDelta, err = parseLinkDelta(fields[1]); err != nil {
				return e, false, err
			}
			fields = fields[:1]
		}
	}
	if len(fields) != 1 {
		return e, false, syntaxErr("%d fields after the change, want 1", len(fields))
	}
	p, ok, err := r.relPath(fields[0])
	if err != nil || !ok {
		return e, !ok, err
	}
	e.Path, e.Xattr = p.path, p.xattr
	return e, false, nil
}

func (r *Reader) parseRename(e Entry, fields []string) (Entry, bool, error) {
	if len(fields) == 1 {
		// Outside parsable mode the paths are joined by " -> ". Spaces
		// in names are escaped, so the arrow can only be the separator.
		old, new, ok := strings.Cut(fields[0], " -> ")
		if !ok {
			return e, false, syntaxErr("rename without a new path")
		}
		fields = []string{old, new}
	}
	if len(fields) != 2 {
		return e, false, syntaxErr("rename with %d paths, want 2", len(fields))
	}
	from, okFrom, err := r.relPath(fields[0])
	if err != nil {
		return e, false, err
	}
	to, okTo, err := r.relPath(fields[1])
	if err != nil {
		return e, false, err
	}
	if !okFrom || !okTo {
		return e, true, nil
	}
	if from.xattr || to.xattr {
		// Moving an attribute changes only its owner's attributes.
		e.Kind, e.Path, e.Xattr = Modified, to.path, true
		return e, false, nil
	}
	if from.path == "" || to.path == "" {
		return e, false, syntaxErr("rename of the dataset root")
	}
	e.Path, e.OldPath = to.path, from.path
	return e, false, nil
}

// detect tells the optional fields of a record from its fields. Paths
// always begin with a slash and a type is one character, so the only field
// that can be taken for a type is the path "/" of a dataset mounted at the
// root; it is the last field of its record, while a type is followed by a
// path.
func detect(fields []string) shape {
	var sh shape
	i := 0
	if looksTimed(fields[0]) {
		sh.timed = true
		i++
	}
	i++ // the change
	if i+1 < len(fields) && len(fields[i]) == 1 && validType(fields[i][0]) &&
		strings.HasPrefix(fields[i+1], "/") {
		sh.classified = true
	}
	return sh
}

// looksTimed reports whether f has the form of "%10lld.%09lld": digits,
// a dot, nine digits, with spaces before the seconds to pad them to ten.
func looksTimed(f string) bool {
	f = strings.TrimLeft(f, " ")
	sec, nsec, ok := strings.Cut(f, ".")
	return ok && sec != "" && len(nsec) == 9 && digits(sec) && digits(nsec)
}

func parseTime(f string) (time.Time, error) {
	sec, nsec, _ := strings.Cut(strings.TrimLeft(f, " "), ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, syntaxErr("timestamp %q out of range", f)
	}
	n, _ := strconv.ParseInt(nsec, 10, 64)
	return time.Unix(s, n), nil
}

func parseLinkDelta(f string) (int, error) {
	if len(f) < 4 || f[0] != '(' || f[len(f)-1] != ')' ||
		(f[1] != '+' && f[1] != '-') || !digits(f[2:len(f)-1]) {
		return 0, syntaxErr("bad link count change %q", f)
	}
	n, err := strconv.Atoi(f[1 : len(f)-1])
	if err != nil || n == 0 {
		return 0, syntaxErr("bad link count change %q", f)
	}
	return n, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

type relPath struct {
	path  string
	xattr bool
}

// relPath decodes a path field and makes it relative to the mountpoint.
// ok is false for an object on the delete queue.
func (r *Reader) relPath(field string) (p relPath, ok bool, err error) {
	full, err := Unescape(field)
	if err != nil {
		return p, false, err
	}
	if full == r.mount+onDeleteQueue {
		return p, false, nil
	}
	rel, found := strings.CutPrefix(full, r.mount+"/")
	if !found {
		return p, false, syntaxErr("path %q is not under the mountpoint %q",
			full, r.mount+"/")
	}
	if rel == "" {
		return p, true, nil
	}

	parts := strings.Split(rel, "/")
	for i, c := range parts {
		switch c {
		case "", ".", "..":
			return p, false, syntaxErr("path %q has a %q component", full, c)
		case xattrDir:
			p.xattr = true
			p.path = strings.Join(parts[:i], "/")
			return p, true, nil
		}
	}
	p.path = rel
	return p, true, nil
}
