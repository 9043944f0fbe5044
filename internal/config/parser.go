package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// assignment is one NAME=value line of a config file.
type assignment struct {
	name  string
	value string
	line  int
}

// parseFile parses a config file: lines NAME=value with the environment
// names (or NAME_FILE for a secret), '#' comments, blank lines, and values
// optionally in single or double quotes, taken literally. An unquoted value
// ends at a '#' that follows a space, so the dump's "  # source" comments
// read back. Every error names the file and line, and a name is checked
// against the settings table here, so that a misspelt setting is an error
// and not a silently ignored line.
func parseFile(path string, data []byte) ([]assignment, error) {
	text := strings.TrimPrefix(string(data), "\ufeff")
	var out []assignment
	seen := make(map[string]int)
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		fail := func(format string, args ...any) error {
			return fmt.Errorf("%s:%d: %s", path, n, fmt.Sprintf(format, args...))
		}
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || line[0] == '#' {
			continue
		}
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			return nil, fail("expected NAME=value, got %q", line)
		}
		name := strings.TrimSpace(line[:eq])
		o, _ := lookupFileName(name)
		switch {
		case name == "":
			return nil, fail("a name is missing before '='")
		case o == configOption:
			return nil, fail("%s cannot be set in a config file", name)
		case o == nil:
			if base, ok := strings.CutSuffix(name, "_FILE"); ok && optionsByName[base] != nil && optionsByName[base].env == base {
				return nil, fail("%s is not a secret; only %s can be read from a file", base, secretNames())
			}
			if s := suggest(name); s != "" {
				return nil, fail("unknown setting %q (did you mean %s?)", name, s)
			}
			return nil, fail("unknown setting %q", name)
		}
		// A setting and its _FILE variant are the same setting: giving both
		// would leave the reader guessing which one wins.
		if prev, ok := seen[o.env]; ok {
			return nil, fail("%s is already set on line %d", o.env, prev)
		}
		seen[o.env] = n
		value, err := parseValue(line[eq+1:])
		if err != nil {
			return nil, fail("%s: %v", name, err)
		}
		out = append(out, assignment{name: name, value: value, line: n})
	}
	return out, nil
}

// parseValue parses the text after '='.
func parseValue(s string) (string, error) {
	s = strings.TrimSpace(s)
	var v string
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", fmt.Errorf("no closing %c", s[0])
		}
		v = s[1 : 1+end]
		if rest := strings.TrimSpace(s[2+end:]); rest != "" && rest[0] != '#' {
			return "", fmt.Errorf("unexpected %q after the closing %c", rest, s[0])
		}
	} else {
		v = s
		if strings.HasPrefix(v, "#") {
			v = ""
		} else if i := commentStart(v); i >= 0 {
			v = strings.TrimSpace(v[:i])
		}
	}
	for _, r := range v {
		if unicode.IsControl(r) && r != '\t' {
			return "", fmt.Errorf("a control character (%q) in the value", r)
		}
	}
	return v, nil
}

// commentStart returns the index of a '#' that follows a space or a tab,
// or -1.
func commentStart(s string) int {
	for i := 1; i < len(s); i++ {
		if s[i] == '#' && (s[i-1] == ' ' || s[i-1] == '\t') {
			return i
		}
	}
	return -1
}

// lookupFileName finds the setting a config file line names, and whether
// it names the setting's _FILE variant. Only environment names are valid
// in a file.
func lookupFileName(name string) (o *option, isFile bool) {
	if o := optionsByName[name]; o != nil && o.env == name {
		return o, false
	}
	if base, ok := strings.CutSuffix(name, "_FILE"); ok {
		if o := optionsByName[base]; o != nil && o.env == base && o.secret {
			return o, true
		}
	}
	return nil, false
}

// quoteValue writes a value so that parseValue reads it back unchanged:
// bare when that is unambiguous, otherwise in quotes. A value holding both
// kinds of quote and needing quotes cannot be written back; it is shown Go
// quoted, which at least stays on one line.
func quoteValue(v string) string {
	needs := v != strings.TrimSpace(v) || commentStart(v) >= 0 ||
		strings.HasPrefix(v, "#") || strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "'")
	for _, r := range v {
		if unicode.IsControl(r) && r != '\t' {
			return strconv.Quote(v)
		}
	}
	switch {
	case !needs:
		return v
	case !strings.Contains(v, `"`):
		return `"` + v + `"`
	case !strings.Contains(v, "'"):
		return "'" + v + "'"
	}
	return strconv.Quote(v)
}

// secretNames lists the settings that may be read from a file.
func secretNames() string {
	var names []string
	for _, o := range options {
		if o.secret {
			names = append(names, o.env)
		}
	}
	return orList(names)
}

// suggest returns the known name closest to a misspelt one, or "" when
// none is close: most misspellings are a letter or two off.
func suggest(name string) string {
	best, bestDist := "", 3
	upper := strings.ToUpper(name)
	for _, o := range options {
		cands := []string{o.env}
		if o.secret {
			cands = append(cands, o.fileEnv())
		}
		for _, cand := range cands {
			if d := editDistance(upper, cand); d < bestDist {
				best, bestDist = cand, d
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
