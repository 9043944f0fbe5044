package ingest

import (
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestGuard(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	g := &Guard{PerAddress: 3, PerEmail: 2, Tracked: 100}
	for i := range 3 {
		if _, err := g.Allow("198.51.100.7", fmt.Sprintf("d%d@example.org", i), t0); err != nil {
			t.Fatalf("attempt %d refused: %v", i, err)
		}
	}
	reason, err := g.Allow("198.51.100.7", "new@example.org", t0.Add(20*time.Second))
	var fe *floodgate.Error
	if reason != LimitAddress || floodgate.ErrorCode(err) != floodgate.ERATELIMITED {
		t.Fatalf("fourth attempt from the address: %q %v", reason, err)
	}
	if fe = err.(*floodgate.Error); fe.RetryAfter != 40*time.Second {
		t.Fatalf("RetryAfter = %v, want the 40 s left of the minute", fe.RetryAfter)
	}
	// Another address is not affected.
	if _, err := g.Allow("203.0.113.9", "other@example.org", t0.Add(20*time.Second)); err != nil {
		t.Fatalf("another address: %v", err)
	}
	// The window passes.
	if _, err := g.Allow("198.51.100.7", "new2@example.org", t0.Add(61*time.Second)); err != nil {
		t.Fatalf("a minute later: %v", err)
	}
	// One email from many addresses.
	for i := range 2 {
		if _, err := g.Allow(fmt.Sprintf("192.0.2.%d", i), "card@example.org", t0); err != nil {
			t.Fatal(err)
		}
	}
	if reason, err := g.Allow("192.0.2.99", "card@example.org", t0); reason != LimitEmail || err == nil {
		t.Fatalf("third attempt for the email: %q %v", reason, err)
	}
	// Zero turns a limit off.
	off := &Guard{Tracked: 10}
	for range 100 {
		if _, err := off.Allow("a", "b", t0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGuardBounded: the table never grows past Tracked; expired windows
// are swept to make room, and when none can go the attempt passes
// uncounted rather than refusing donors.
func TestGuardBounded(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	g := &Guard{PerAddress: 1, Tracked: 10}
	for i := range 50 {
		if _, err := g.Allow(fmt.Sprintf("10.0.0.%d", i), "", t0); err != nil {
			t.Fatalf("attempt %d: %v", i, err)
		}
		if n := len(g.addrs) + len(g.emails); n > 10 {
			t.Fatalf("tracking %d keys, bound 10", n)
		}
	}
	if _, err := g.Allow("10.0.0.99", "", t0.Add(2*time.Minute)); err != nil || len(g.addrs) != 1 {
		t.Fatalf("after the windows ended: %v, %d tracked", err, len(g.addrs))
	}
}
