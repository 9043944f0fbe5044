package sandbox

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Bounds of one decoded request. Stripe's own bodies are far smaller; the
// bounds keep a hostile or broken client from making the sandbox allocate
// without limit.
const (
	maxFormFields = 1000
	maxFormDepth  = 6
	maxKeyLen     = 500
)

// field is one key=value pair of a form body, its key split on Stripe's
// bracket notation: "metadata[donation_id]" is path ["metadata",
// "donation_id"], "expand[0]" is ["expand", "0"] and "expand[]" is
// ["expand", ""].
type field struct {
	path  []string
	value string
}

// form is a decoded application/x-www-form-urlencoded body (or query
// string) in the order the client sent it, which is what stripe-go sends
// and what Stripe parses.
type form struct {
	fields []field
}

// errForm describes why a body could not be decoded; it becomes a 400.
var errForm = errors.New("invalid form encoding")

// parseForm decodes raw in Stripe's bracket notation. It keeps every pair in
// order, so that lists and repeated keys mean what the client meant.
func parseForm(raw string) (*form, error) {
	f := &form{}
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		if len(f.fields) == maxFormFields {
			return nil, fmt.Errorf("%w: more than %d fields", errForm, maxFormFields)
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q", errForm, k)
		}
		val, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: value of %q", errForm, key)
		}
		path, err := splitKey(key)
		if err != nil {
			return nil, err
		}
		f.fields = append(f.fields, field{path: path, value: val})
	}
	return f, nil
}

// splitKey splits "a[b][c]" into ["a", "b", "c"]. A key must start with a
// name and continue only with bracketed segments, which may be empty ("[]").
func splitKey(key string) ([]string, error) {
	if key == "" || len(key) > maxKeyLen {
		return nil, fmt.Errorf("%w: key %q", errForm, key)
	}
	i := strings.IndexAny(key, "[]")
	if i == 0 {
		return nil, fmt.Errorf("%w: key %q has no name", errForm, key)
	}
	if i < 0 {
		return []string{key}, nil
	}
	path := []string{key[:i]}
	rest := key[i:]
	for rest != "" {
		if rest[0] != '[' {
			return nil, fmt.Errorf("%w: key %q", errForm, key)
		}
		end := strings.IndexAny(rest[1:], "[]")
		if end < 0 || rest[1+end] != ']' {
			return nil, fmt.Errorf("%w: key %q", errForm, key)
		}
		path = append(path, rest[1:1+end])
		rest = rest[2+end:]
		if len(path) > maxFormDepth {
			return nil, fmt.Errorf("%w: key %q nests too deep", errForm, key)
		}
	}
	return path, nil
}

// key joins a path back into bracket notation.
func joinKey(path []string) string {
	var b strings.Builder
	b.WriteString(path[0])
	for _, p := range path[1:] {
		b.WriteByte('[')
		b.WriteString(p)
		b.WriteByte(']')
	}
	return b.String()
}

// encode writes the form back in its original order, escaped the way
// stripe-go escapes (brackets left readable).
func (f *form) encode() string {
	var b strings.Builder
	for i, fl := range f.fields {
		if i > 0 {
			b.WriteByte('&')
		}
		k := url.QueryEscape(joinKey(fl.path))
		k = strings.ReplaceAll(strings.ReplaceAll(k, "%5B", "["), "%5D", "]")
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(fl.value))
	}
	return b.String()
}

// canonical is the form with its pairs sorted by key (stable, so repeated
// keys keep their order). Two requests with the same canonical form carry
// the same parameters, whatever order their encoder chose; this is what an
// idempotency key is compared against.
func (f *form) canonical() string {
	sorted := &form{fields: append([]field(nil), f.fields...)}
	slices.SortStableFunc(sorted.fields, func(a, b field) int {
		return cmp.Compare(joinKey(a.path), joinKey(b.path))
	})
	return sorted.encode()
}

// names lists the distinct top-level parameter names, in order of first use.
func (f *form) names() []string {
	var out []string
	seen := map[string]bool{}
	for _, fl := range f.fields {
		if !seen[fl.path[0]] {
			seen[fl.path[0]] = true
			out = append(out, fl.path[0])
		}
	}
	return out
}

// scalar returns the value of the plain field name; when it is repeated the
// last value wins, as in Stripe's parser. A nested use of name ("name[x]")
// is not a scalar and is an error.
func (f *form) scalar(name string) (string, bool, *apiError) {
	val, ok := "", false
	for _, fl := range f.fields {
		if fl.path[0] != name {
			continue
		}
		if len(fl.path) != 1 {
			return "", false, errInvalid(name, "", fmt.Sprintf("Invalid string: %s must be a string, not a hash or array.", name))
		}
		val, ok = fl.value, true
	}
	return val, ok, nil
}

// hash returns the one-level hash name[k]=v. An empty scalar ("name=") is
// Stripe's way to send an empty hash and yields an empty map.
func (f *form) hash(name string) (map[string]string, bool, *apiError) {
	var out map[string]string
	for _, fl := range f.fields {
		if fl.path[0] != name {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		switch {
		case len(fl.path) == 1 && fl.value == "":
		case len(fl.path) == 2 && fl.path[1] != "":
			out[fl.path[1]] = fl.value
		default:
			return nil, false, errInvalid(name, "", fmt.Sprintf("Invalid hash: %s must be a hash of strings.", name))
		}
	}
	return out, out != nil, nil
}

// list returns the array name[]=v or name[0]=v, ordered by index when
// indexed (stripe-go always indexes) and by position otherwise.
func (f *form) list(name string) ([]string, bool, *apiError) {
	type item struct {
		idx   int
		value string
	}
	var items []item
	found := false
	for pos, fl := range f.fields {
		if fl.path[0] != name {
			continue
		}
		found = true
		if len(fl.path) != 2 {
			return nil, false, errInvalid(name, "", fmt.Sprintf("Invalid array: %s must be an array of strings.", name))
		}
		idx := pos + 1_000_000 // unindexed items keep their position, after indexed ones
		if fl.path[1] != "" {
			n, err := strconv.Atoi(fl.path[1])
			if err != nil || n < 0 || n >= maxFormFields {
				return nil, false, errInvalid(name, "", fmt.Sprintf("Invalid array: %s[%s] is not an array index.", name, fl.path[1]))
			}
			idx = n
		}
		items = append(items, item{idx, fl.value})
	}
	slices.SortStableFunc(items, func(a, b item) int { return cmp.Compare(a.idx, b.idx) })
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.value
	}
	return out, found, nil
}

// checkNames rejects any top-level parameter not in allowed, as Stripe does
// with parameter_unknown.
func (f *form) checkNames(allowed ...string) *apiError {
	for _, n := range f.names() {
		ok := false
		for _, a := range allowed {
			if n == a {
				ok = true
				break
			}
		}
		if !ok {
			return &apiError{status: 400, Type: typeInvalidRequest, Code: "parameter_unknown", Param: n,
				Message: fmt.Sprintf("Received unknown parameter: %s", n)}
		}
	}
	return nil
}

// checkKeys rejects unknown keys inside a hash parameter.
func checkKeys(name string, h map[string]string, allowed ...string) *apiError {
	for k := range h {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			p := name + "[" + k + "]"
			return &apiError{status: 400, Type: typeInvalidRequest, Code: "parameter_unknown", Param: p,
				Message: fmt.Sprintf("Received unknown parameter: %s", p)}
		}
	}
	return nil
}

// parseInt reads an integer parameter the way Stripe reports bad ones.
func parseInt(param, s string) (int64, *apiError) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errInvalid(param, "parameter_invalid_integer", fmt.Sprintf("Invalid integer: %s", s))
	}
	return n, nil
}

// parseBool reads a boolean parameter; Stripe accepts only "true" and
// "false".
func parseBool(param, s string) (bool, *apiError) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errInvalid(param, "", fmt.Sprintf("Invalid boolean: %s", s))
}

// get returns the value at exactly path (the last one when repeated).
func (f *form) get(path ...string) (string, bool) {
	val, ok := "", false
	for _, fl := range f.fields {
		if len(fl.path) != len(path) {
			continue
		}
		same := true
		for i := range path {
			if fl.path[i] != path[i] {
				same = false
				break
			}
		}
		if same {
			val, ok = fl.value, true
		}
	}
	return val, ok
}
