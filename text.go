package floodgate

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on free text that reaches the store. They keep rows small and the
// accept path cheap, and every one is named in the contract's errors.
const (
	MaxNameLen        = 200
	MaxEmailLen       = 254
	MaxMessageLen     = 500
	MaxPaymentMethod  = 255
	MaxIdempotencyKey = 255
	MaxDeclField      = 100
	MaxPostcodeLen    = 16
	MaxTextVersion    = 32
)

// CheckText reports what is wrong with s as a bounded, printable UTF-8
// string, or "" when nothing is. Newlines and tabs are allowed only when
// multiline is set; other control and format characters never are.
func CheckText(s string, maxRunes int, multiline bool) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return "must be at most " + strconv.Itoa(maxRunes) + " characters"
	}
	for _, r := range s {
		if multiline && (r == '\n' || r == '\t') {
			continue
		}
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Cf, r) && r != '\u200d' {
			return "must not contain control characters"
		}
	}
	return ""
}

// NormalizeEmail trims and lower-cases an email address, the form in which
// people are told apart.
func NormalizeEmail(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// CheckEmail reports what is wrong with an email address, or "". It
// accepts the addresses people type into a donation form (RFC 5321's
// dot-atom local part, a domain of dot-separated labels with at least one
// dot) and nothing with a display name, quotes, comments or spaces.
func CheckEmail(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > MaxEmailLen {
		return "must be at most " + strconv.Itoa(MaxEmailLen) + " characters"
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at > 64 || at == len(s)-1 {
		return "must be a plain address like name@example.org"
	}
	local, domain := s[:at], s[at+1:]
	prev := byte('.')
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c == '.':
			if prev == '.' {
				return "must be a plain address like name@example.org"
			}
		case c < 0x80 && !atext[c]:
			return "must be a plain address like name@example.org"
		}
		prev = c
	}
	if prev == '.' {
		return "must be a plain address like name@example.org"
	}
	if msg := CheckText(local, 64, false); msg != "" {
		return msg
	}
	labels := 0
	for label := range strings.SplitSeq(domain, ".") {
		labels++
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "must have a domain like example.org"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c < 0x80 && !(c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
				return "must have a domain like example.org"
			}
		}
	}
	if labels < 2 {
		return "must have a domain like example.org"
	}
	if msg := CheckText(domain, MaxEmailLen, false); msg != "" {
		return msg
	}
	return ""
}

// atext are the ASCII characters RFC 5322 allows in an unquoted local part.
var atext = func() (t [128]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "!#$%&'*+-/=?^_`{|}~" {
		t[c] = true
	}
	return t
}()

// CheckPaymentMethod reports what is wrong with a payment method id, or "".
// Card numbers never reach floodgate: only the provider's token does.
func CheckPaymentMethod(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) < 4 || len(s) > MaxPaymentMethod || s[:3] != "pm_" {
		return "must be a payment method id (pm_...)"
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return "must be a payment method id (pm_...)"
		}
	}
	return ""
}

// CheckIdempotencyKey reports what is wrong with an Idempotency-Key, or "".
func CheckIdempotencyKey(s string) string {
	if s == "" {
		return "is required"
	}
	if len(s) > MaxIdempotencyKey {
		return "must be at most " + strconv.Itoa(MaxIdempotencyKey) + " characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "must be printable ASCII"
		}
	}
	return ""
}
