package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf16"

	"github.com/floodgate/floodgate"
)

// shape is the set of member names a JSON object may have, exactly as the
// struct's json tags spell them, with the shapes of members that are
// objects themselves.
type shape map[string]shape

var shapes sync.Map // reflect.Type -> shape

// shapeOf derives (once per type) the members a struct decodes.
func shapeOf(t reflect.Type) shape {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	if s, ok := shapes.Load(t); ok {
		return s.(shape)
	}
	s := shape{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.String() != "time.Time" {
			s[name] = shapeOf(ft)
		} else {
			s[name] = nil
		}
	}
	shapes.Store(t, s)
	return s
}

// checkMembers refuses what encoding/json lets through: a member name that
// matches a field only when letter case is ignored ("AMOUNT"), and a member
// given twice (the last would silently win). It runs after the decoder has
// accepted body, so body is well-formed JSON; it still never reads out of
// bounds on anything else. It walks only the objects the shape describes,
// without allocating for ordinary names.
func checkMembers(body []byte, s shape) error {
	sc := scanner{b: body}
	sc.space()
	if !sc.eat('{') {
		return nil
	}
	return sc.object(s, "")
}

type scanner struct {
	b []byte
	i int
	// lone is set when a string escapes half a UTF-16 surrogate pair:
	// encoding/json would quietly turn it into U+FFFD, changing what the
	// donor sent.
	lone bool
}

func (sc *scanner) space() {
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

func (sc *scanner) eat(c byte) bool {
	if sc.i < len(sc.b) && sc.b[sc.i] == c {
		sc.i++
		return true
	}
	return false
}

// object checks the members of the object whose '{' was just read.
func (sc *scanner) object(s shape, prefix string) error {
	var seenBuf [16][]byte
	seen := seenBuf[:0]
	for {
		sc.space()
		if sc.i >= len(sc.b) || sc.eat('}') {
			return nil
		}
		sc.eat(',')
		sc.space()
		name, ok := sc.str()
		if !ok {
			return nil
		}
		sub, known := s[string(name)] // no allocation for a map key
		if !known {
			return floodgate.Invalid(prefix+string(name), "is not a known field")
		}
		for _, n := range seen {
			if bytes.Equal(n, name) {
				return floodgate.Invalid(prefix+string(name), "is given twice")
			}
		}
		seen = append(seen, name)
		sc.space()
		sc.eat(':')
		sc.space()
		if sub != nil && sc.eat('{') {
			if err := sc.object(sub, prefix+string(name)+"."); err != nil {
				return err
			}
			continue
		}
		if !sc.value() {
			return nil
		}
		if sc.lone {
			return floodgate.Invalid(prefix+string(name), "must be valid UTF-8 (it escapes half a surrogate pair)")
		}
	}
}

// str reads a string at the cursor and returns its decoded text: a slice
// of body when it has no escapes, a decoded copy when it has.
func (sc *scanner) str() ([]byte, bool) {
	if !sc.eat('"') {
		return nil, false
	}
	start, escaped := sc.i, false
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case '\\':
			escaped = true
			sc.i += 2
			continue
		case '"':
			raw := sc.b[start:sc.i]
			sc.i++
			if !escaped {
				return raw, true
			}
			if loneSurrogate(raw) {
				sc.lone = true
			}
			var out string
			if json.Unmarshal(sc.b[start-1:sc.i], &out) != nil {
				return nil, false
			}
			return []byte(out), true
		}
		sc.i++
	}
	return nil, false
}

// value skips one value of any kind.
func (sc *scanner) value() bool {
	if sc.i >= len(sc.b) {
		return false
	}
	switch sc.b[sc.i] {
	case '"':
		_, ok := sc.str()
		return ok
	case '{', '[':
		depth := 0
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case '"':
				if _, ok := sc.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					sc.i++
					return true
				}
			}
			sc.i++
		}
		return false
	}
	for sc.i < len(sc.b) { // number, true, false, null
		switch sc.b[sc.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return true
		}
		sc.i++
	}
	return true
}

// loneSurrogate reports whether the raw text of a JSON string escapes a
// UTF-16 surrogate that is not half of a pair (\ud800 alone, or a low
// half first), as encoding/json pairs them.
func loneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		r, ok := escapedUnit(raw, i)
		if !ok {
			i++ // a one-letter escape: skip the letter
			continue
		}
		i += 5
		if !utf16.IsSurrogate(r) {
			continue
		}
		low, ok := escapedUnit(raw, i+1)
		if !ok || utf16.DecodeRune(r, low) == unicode.ReplacementChar {
			return true
		}
		i += 6
	}
	return false
}

// escapedUnit reads the \uXXXX escape at raw[i], if that is one.
func escapedUnit(raw []byte, i int) (rune, bool) {
	if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
	return rune(n), err == nil
}
