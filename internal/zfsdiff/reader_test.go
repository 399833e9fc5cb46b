package zfsdiff

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// samples is where the streams shared with the layer store's tests live.
const samples = "../../testdata/zfsdiff"

const mount = "/tank/zl/layer"

func ts(nsec int64) time.Time { return time.Unix(1733318400, nsec) }

func TestReaderSamples(t *testing.T) {
	tests := []struct {
		file  string
		mount string
		want  []Entry
	}{
		{"classified-timed.txt", mount, []Entry{
			{Time: ts(1), Kind: Modified, Type: Directory, Path: ""},
			{Time: ts(2), Kind: Modified, Type: Directory, Path: "etc"},
			{Time: ts(3), Kind: Modified, Type: Regular, Path: "etc/passwd"},
			{Time: ts(4), Kind: Added, Type: Regular, Path: "etc/new file"},
			{Time: ts(5), Kind: Removed, Type: Symlink, Path: "etc/localtime"},
			{Time: ts(6), Kind: Renamed, Type: Directory, Path: "opt/new",
				OldPath: "opt/old"},
			{Time: ts(7), Kind: Modified, Type: Regular, Path: "usr/bin/perl",
				LinkDelta: 1},
			{Time: ts(8), Kind: Modified, Type: Regular, Path: "usr/bin/git",
				LinkDelta: -2},
			{Time: ts(9), Kind: Added, Type: Socket, Path: "run/app.sock"},
			{Time: ts(10), Kind: Added, Type: FIFO, Path: "run/fifo"},
			{Time: ts(11), Kind: Added, Type: BlockDevice, Path: "dev/sda"},
			{Time: ts(12), Kind: Added, Type: CharDevice, Path: "dev/null"},
			{Time: ts(13), Kind: Added, Type: Door, Path: "var/door"},
			{Time: ts(14), Kind: Added, Type: EventPort, Path: "var/port"},
			{Time: ts(15), Kind: Modified, Type: Unknown, Path: "var/odd"},
			{Time: time.Unix(5, 0), Kind: Added, Type: Regular,
				Path: "caf\u00e9\ttab\nnl\\bs"},
			{Time: ts(17), Kind: Added, Type: Regular, Path: "etc/shadow",
				Xattr: true},
			{Time: ts(18), Kind: Modified, Type: Directory, Path: "etc/shadow",
				Xattr: true},
		}},
		{"classified.txt", mount, []Entry{
			{Kind: Modified, Type: Directory, Path: ""},
			{Kind: Added, Type: Directory, Path: "a dir"},
			{Kind: Added, Type: Regular, Path: "a dir/f"},
			{Kind: Renamed, Type: Regular, Path: "a dir/b", OldPath: "b"},
			{Kind: Modified, Type: Regular, Path: "c", LinkDelta: 3},
			{Kind: Removed, Type: Directory, Path: "d"},
		}},
		{"plain.txt", mount + "/", []Entry{
			{Kind: Modified, Path: ""},
			{Kind: Added, Path: "x"},
			{Kind: Renamed, Path: "z", OldPath: "y"},
			{Kind: Modified, Path: "l", LinkDelta: -1},
			{Kind: Removed, Path: "w"},
		}},
		{"human.txt", mount, []Entry{
			{Kind: Modified, Type: Directory, Path: ""},
			{Kind: Renamed, Type: Regular, Path: "to there", OldPath: "from here"},
			{Kind: Added, Type: Regular, Path: "n"},
		}},
		{"rootmount.txt", "/", []Entry{
			{Kind: Modified, Type: Directory, Path: ""},
			{Kind: Modified, Type: Regular, Path: "etc/passwd"},
			{Kind: Renamed, Type: Symlink, Path: "b", OldPath: "a"},
		}},
		{"rootmount-plain.txt", "/", []Entry{
			{Kind: Modified, Path: ""},
			{Kind: Added, Path: "x"},
		}},
		{"empty.txt", mount, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(samples, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := readAll(f, tt.mount)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("entries (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReaderRejects(t *testing.T) {
	tests := []struct {
		file string
		line int
		text string // part of the error
	}{
		{"bad-escape.txt", 2, "short escape"},
		{"bad-escape-digit.txt", 1, "bad escape"},
		{"bad-octal.txt", 1, "not a byte"},
		{"bad-kind.txt", 1, "unknown change"},
		{"bad-mount.txt", 1, "not under the mountpoint"},
		{"bad-truncated.txt", 2, "no newline"},
		{"bad-mixed.txt", 2, "differ from the first"},
		{"bad-linkdelta.txt", 1, "link count"},
		{"bad-dotdot.txt", 1, `".." component`},
		{"bad-raw.txt", 1, "unescaped byte 0x20"},
		{"bad-extra.txt", 1, "fields after the change"},
		{"bad-empty-line.txt", 2, "empty line"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			f, err := os.Open(filepath.Join(samples, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = readAll(f, mount)
			var le *LineError
			if !errors.As(err, &le) || !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %v, want a *LineError wrapping ErrSyntax", err)
			}
			if le.Line != tt.line || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q, want line %d and %q", err, tt.line, tt.text)
			}
		})
	}
}

func TestReaderLongLine(t *testing.T) {
	line := "+\tF\t" + mount + "/" + strings.Repeat("a", MaxLine) + "\n"
	_, err := readAll(strings.NewReader(line), mount)
	if !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), "longer") {
		t.Fatalf("error %v, want a line too long", err)
	}
}

func TestReaderStopsAfterError(t *testing.T) {
	r := NewReader(strings.NewReader("X\n+\t"+mount+"/a\n"), mount)
	_, err1 := r.Next()
	_, err2 := r.Next()
	if err1 == nil || err1 != err2 {
		t.Fatalf("errors %v then %v, want the same error twice", err1, err2)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	for _, s := range []string{"", "plain", "a b", `back\slash`, "\x00\x7f\xff", "é"} {
		got, err := Unescape(Escape(s))
		if err != nil || got != s {
			t.Errorf("Unescape(Escape(%q)) = %q, %v", s, got, err)
		}
	}
	if got := Escape(" "); got != `\0040` {
		t.Errorf("Escape(space) = %q, want \\0040", got)
	}
}

func readAll(r io.Reader, mountpoint string) ([]Entry, error) {
	var out []Entry
	for e, err := range All(r, mountpoint) {
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// format writes entries back in the shape sh, as libzfs would; the fuzz
// target checks that reading it gives the same entries.
func format(entries []Entry, sh shape, mountpoint string) string {
	m := strings.TrimRight(mountpoint, "/")
	full := func(p string, xattr bool) string {
		s := m + "/" + p
		if xattr {
			s = strings.TrimSuffix(s, "/") + "/" + xattrDir
		}
		return Escape(s)
	}
	var b strings.Builder
	for _, e := range entries {
		if sh.timed {
			fmt.Fprintf(&b, "%10d.%09d\t", e.Time.Unix(), e.Time.Nanosecond())
		}
		b.WriteByte(byte(e.Kind))
		b.WriteByte('\t')
		if sh.classified {
			b.WriteByte(byte(e.Type))
			b.WriteByte('\t')
		}
		switch {
		case e.Kind == Renamed:
			b.WriteString(full(e.OldPath, false) + "\t" + full(e.Path, false))
		case e.LinkDelta != 0:
			fmt.Fprintf(&b, "%s\t(%+d)", full(e.Path, e.Xattr), e.LinkDelta)
		default:
			b.WriteString(full(e.Path, e.Xattr))
		}
		b.WriteByte('\n')
	}
	return b.String()
}
