package floodgate

import (
	"strings"
	"testing"
	"time"
)

func TestNewIDIsOrderedAndRandom(t *testing.T) {
	a := NewID(DonationIDPrefix)
	time.Sleep(2 * time.Millisecond)
	b := NewID(DonationIDPrefix)
	if !ValidID(DonationIDPrefix, a) || !ValidID(DonationIDPrefix, b) {
		t.Fatalf("invalid ids %q %q", a, b)
	}
	if a >= b {
		t.Fatalf("ids do not sort by time: %q then %q", a, b)
	}
	seen := map[string]bool{}
	for range 10000 {
		id := NewID(DonationIDPrefix)
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "don_", "ent_" + strings.Repeat("0", 36), "don_" + strings.Repeat("0", 35),
		"don_" + strings.Repeat("u", 36), "don_" + strings.Repeat("A", 36)} {
		if ValidID(DonationIDPrefix, bad) {
			t.Fatalf("ValidID(%q) = true", bad)
		}
	}
}
