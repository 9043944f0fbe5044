package floodgate

import (
	"strings"
	"testing"
)

func TestCheckEmail(t *testing.T) {
	good := []string{"aoife@example.ie", "a.b+tag@mail.example.org", "o'brien@example.ie", "x@a-b.example.co.uk",
		"séan@example.ie", "donor@bücher.example"}
	bad := []string{"", "plain", "@example.org", "a@", "a@b", "a@.org", "a@example..org", "a@-x.org", "a@x-.org",
		".a@example.org", "a.@example.org", "a..b@example.org", "a b@example.org", "Aoife <a@example.org>",
		`"a"@example.org`, "a@exa mple.org", "a@example.org\n", "a\x00@example.org", "a@example_x.org",
		strings.Repeat("a", 65) + "@example.org", "a@" + strings.Repeat("b", 64) + ".org", strings.Repeat("a", 60) + "@" + strings.Repeat("b.", 100) + "org"}
	for _, e := range good {
		if msg := CheckEmail(e); msg != "" {
			t.Errorf("CheckEmail(%q) = %q, want ok", e, msg)
		}
	}
	for _, e := range bad {
		if CheckEmail(e) == "" {
			t.Errorf("CheckEmail(%q) accepted", e)
		}
	}
}

func TestCheckPaymentMethod(t *testing.T) {
	for _, pm := range []string{"pm_card_visa", "pm_1NvXyZ2eZvKYlo2C", "pm_x"} {
		if msg := CheckPaymentMethod(pm); msg != "" {
			t.Errorf("%q: %s", pm, msg)
		}
	}
	for _, pm := range []string{"", "pm_", "tok_visa", "4242424242424242", "pm_card visa", "pm_card-visa", "pm_" + strings.Repeat("x", 253), "PM_card"} {
		if CheckPaymentMethod(pm) == "" {
			t.Errorf("%q accepted", pm)
		}
	}
}

func TestCheckText(t *testing.T) {
	for _, tt := range []struct {
		s     string
		multi bool
		ok    bool
	}{
		{"Aoife Ní Bhriain", false, true}, {"line\nbreak", false, false}, {"line\nbreak", true, true},
		{"tab\tok", true, true}, {"bell\a", true, false}, {"rtl\u202eoverride", false, false},
		{"zwj 👩\u200d👩", false, true}, {"\xff", false, false}, {strings.Repeat("é", 200), false, true},
		{strings.Repeat("é", 201), false, false},
	} {
		if got := CheckText(tt.s, 200, tt.multi) == ""; got != tt.ok {
			t.Errorf("CheckText(%q, multi=%v) ok = %v, want %v", tt.s, tt.multi, got, tt.ok)
		}
	}
}

func TestCheckIdempotencyKey(t *testing.T) {
	for _, k := range []string{"a", "550e8400-e29b-41d4-a716-446655440000", "order 42 / retry", strings.Repeat("k", 255)} {
		if msg := CheckIdempotencyKey(k); msg != "" {
			t.Errorf("%q: %s", k, msg)
		}
	}
	for _, k := range []string{"", strings.Repeat("k", 256), "tab\there", "nul\x00", "clé"} {
		if CheckIdempotencyKey(k) == "" {
			t.Errorf("%q accepted", k)
		}
	}
}
