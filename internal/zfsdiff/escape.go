package zfsdiff

import "strings"

// Unescape decodes a path field: every "\NNNN" (four octal digits, at most
// 0377) becomes the byte it names. The field must otherwise hold only the
// bytes libzfs prints as they are, printable ASCII other than space and
// backslash; anything else means the field was not written by libzfs's
// escaping (or the line was cut or mangled), and is refused.
func Unescape(s string) (string, error) {
	if strings.IndexByte(s, '\\') < 0 {
		for i := 0; i < len(s); i++ {
			if !plain(s[i]) {
				return "", syntaxErr("unescaped byte 0x%02x in path", s[i])
			}
		}
		return s, nil
	}

	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			if !plain(c) {
				return "", syntaxErr("unescaped byte 0x%02x in path", c)
			}
			b.WriteByte(c)
			continue
		}
		if len(s)-i-1 < 4 {
			return "", syntaxErr("short escape %q in path", s[i:])
		}
		v := 0
		for _, d := range []byte(s[i+1 : i+5]) {
			if d < '0' || d > '7' {
				return "", syntaxErr("bad escape %q in path", s[i:i+5])
			}
			v = v*8 + int(d-'0')
		}
		if v > 0377 {
			return "", syntaxErr("escape %q is not a byte", s[i:i+5])
		}
		b.WriteByte(byte(v))
		i += 4
	}
	return b.String(), nil
}

// Escape encodes a path the way libzfs does ("\\%04o" for every byte that
// is not plain). The reader does not need it; tests and fuzz seeds use it
// to write streams.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if plain(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteString(`\0`)
		b.WriteByte('0' + c>>6)
		b.WriteByte('0' + c>>3&7)
		b.WriteByte('0' + c&7)
	}
	return b.String()
}

// plain reports whether libzfs prints c without escaping it.
func plain(c byte) bool {
	return c > ' ' && c != '\\' && c < 0177
}
