package hostfacts

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// osRelease reads os-release(5): KEY=value lines where value may be quoted
// the way sh quotes it. Only the fields in OSRelease are kept; identifiers
// are validated because they pick the advisory ecosystem.
func (p *parser) osRelease(s *section) {
	os := &p.facts.OS
	for _, l := range s.body {
		t := strings.TrimSpace(l.text)
		if t == "" || t[0] == '#' {
			continue
		}
		key, raw, ok := strings.Cut(t, "=")
		if !ok {
			p.problem(l.n, s.name, "want KEY=value")
			continue
		}
		var dst *string
		check := validIdent
		switch key {
		case "ID":
			dst = &os.ID
		case "VERSION_ID":
			dst = &os.VersionID
		case "VERSION_CODENAME":
			dst = &os.VersionCodename
		case "NAME":
			dst, check = &os.Name, validText
		case "PRETTY_NAME":
			dst, check = &os.PrettyName, validText
		case "ID_LIKE":
		default:
			continue
		}
		v, err := unquoteOSRelease(raw)
		if err == nil {
			if key == "ID_LIKE" {
				var like []string
				for id := range strings.FieldsSeq(v) {
					if err = validIdent(id); err != nil {
						break
					}
					like = append(like, id)
				}
				if err == nil {
					os.IDLike = like
				}
			} else if err = check(v); err == nil {
				*dst = v
			}
		}
		if err != nil {
			p.problem(l.n, s.name, fmt.Sprintf("%s: %v", key, err))
		}
	}
	if os.ID == "" {
		p.problem(s.header, s.name, "no ID")
	}
}

// unquoteOSRelease undoes the sh quoting os-release(5) allows: a value in
// double quotes (with \" \\ \$ \` escapes), in single quotes, or bare.
func unquoteOSRelease(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	switch q := raw[0]; q {
	case '\'':
		if len(raw) < 2 || raw[len(raw)-1] != '\'' || strings.IndexByte(raw[1:len(raw)-1], '\'') >= 0 {
			return "", fmt.Errorf("unbalanced single quotes in %.64q", raw)
		}
		return raw[1 : len(raw)-1], nil
	case '"':
		var b strings.Builder
		for i := 1; i < len(raw); i++ {
			c := raw[i]
			switch {
			case c == '\\' && i+1 < len(raw) && strings.IndexByte("\"\\$`", raw[i+1]) >= 0:
				b.WriteByte(raw[i+1])
				i++
			case c == '"':
				if i != len(raw)-1 {
					return "", fmt.Errorf("text after closing quote in %.64q", raw)
				}
				return b.String(), nil
			case strings.IndexByte("$`", c) >= 0:
				return "", fmt.Errorf("unescaped %q in %.64q", c, raw)
			default:
				b.WriteByte(c)
			}
		}
		return "", fmt.Errorf("unbalanced double quotes in %.64q", raw)
	}
	for i := 0; i < len(raw); i++ {
		if strings.IndexByte(" \t\"'\\$`;&|<>()", raw[i]) >= 0 {
			return "", fmt.Errorf("%q in unquoted value %.64q", raw[i], raw)
		}
	}
	return raw, nil
}

// validIdent accepts os-release identifiers (ID, VERSION_ID, codenames):
// os-release(5) allows 0-9, a-z, '.', '_' and '-'; upper case and '~' are
// tolerated for versions seen in the wild.
func validIdent(s string) error {
	if len(s) > 64 {
		return fmt.Errorf("longer than 64 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-~", c) >= 0) {
			return fmt.Errorf("character %q at offset %d not allowed in %.64q", c, i, s)
		}
	}
	return nil
}

// validText accepts a human-readable line: UTF-8 without control
// characters, bounded.
func validText(s string) error {
	switch {
	case len(s) > 256:
		return fmt.Errorf("longer than 256 bytes")
	case !utf8.ValidString(s):
		return fmt.Errorf("not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %q at offset %d", r, i)
		}
	}
	return nil
}

// validToken accepts a bounded word of [A-Za-z0-9] and the given symbols.
func validToken(what, s string, maxLen int, symbols string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: empty", what)
	case len(s) > maxLen:
		return fmt.Errorf("%s %.64q...: longer than %d bytes", what, s, maxLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(symbols, c) >= 0) {
			return fmt.Errorf("%s %q: character %q at offset %d not allowed", what, s, c, i)
		}
	}
	return nil
}

// validKernel accepts a kernel release such as 6.1.0-37-amd64 or
// 5.15.0-91-generic.
func validKernel(s string) error { return validToken("kernel release", s, 128, ".-+_~") }

// validArch accepts a machine name such as x86_64 or aarch64.
func validArch(s string) error { return validToken("machine", s, 32, "_-") }

// validHostname accepts an RFC 1123 host name; '_' is tolerated because
// real hosts carry it.
func validHostname(s string) error { return validToken("hostname", s, 253, ".-_") }

// validComponentVersion accepts a version extracted by a probe.
func validComponentVersion(s string) error { return validToken("version", s, 64, ".+~-") }

// validBootID accepts the kernel's boot id, a lowercase UUID.
func validBootID(s string) error {
	if len(s) != 36 {
		return fmt.Errorf("boot id %.64q: want a 36-character UUID", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return fmt.Errorf("boot id %q: want '-' at offset %d", s, i)
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("boot id %q: character %q at offset %d is not lowercase hex", s, c, i)
		}
	}
	return nil
}
