package floodgate

import (
	"testing"
	"time"
)

// TestProviderClock: each answer bounds the provider's clock by its Date
// (whole seconds, rounded down) and the local times around it; answers
// narrow the bounds, a stepped clock starts them again, and a window is
// widened outward to whole seconds so that a PaymentIntent stamped by the
// provider in the interval cannot fall outside it.
func TestProviderClock(t *testing.T) {
	local := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	var c ProviderClock
	if c.Known {
		t.Fatal("known before any answer")
	}
	// The provider runs 5.3 s ahead; an answer took 200 ms.
	offset := 5300 * time.Millisecond
	answer := func(c ProviderClock, sent time.Time, took, handled time.Duration) ProviderClock {
		date := sent.Add(handled + offset).Truncate(time.Second)
		return c.Observe(sent, sent.Add(took), date)
	}
	c = answer(c, local, 200*time.Millisecond, 100*time.Millisecond)
	if !c.Known || c.Low > offset || c.High < offset {
		t.Fatalf("one answer: %+v does not hold the offset %v", c, offset)
	}
	if w := c.High - c.Low; w > 1200*time.Millisecond {
		t.Fatalf("one answer: bounds %v wide, want at most a second and the round trip", w)
	}
	for i := range 20 {
		c = answer(c, local.Add(time.Duration(i)*1370*time.Millisecond), 50*time.Millisecond, 20*time.Millisecond)
		if c.Low > offset || c.High < offset {
			t.Fatalf("after %d answers: %+v does not hold the offset %v", i+2, c, offset)
		}
	}
	if w := c.High - c.Low; w > 200*time.Millisecond {
		t.Errorf("twenty answers leave bounds %v wide", w)
	}
	// The provider's clock is stepped back an hour: the old bounds no
	// longer meet the new answer's, which starts them again.
	offset -= time.Hour
	c = answer(c, local.Add(time.Minute), 100*time.Millisecond, 50*time.Millisecond)
	if c.Low > offset || c.High < offset {
		t.Fatalf("after a step: %+v does not hold the offset %v", c, offset)
	}

	// A window: local interval [from, to], created anywhere in it on the
	// provider's clock, rounded down to whole seconds, lies within.
	c = ProviderClock{Low: 5 * time.Second, High: 6 * time.Second, Known: true}
	from, to := local.Add(300*time.Millisecond), local.Add(2700*time.Millisecond)
	w := c.Window(from, to, time.Second, 2*time.Minute)
	if want := (Window{From: local.Add(4 * time.Second), To: local.Add(9 * time.Second)}); w != want {
		t.Errorf("window = %s, want %s", w, want)
	}
	for _, at := range []time.Time{from.Add(c.Low), to.Add(c.High)} {
		if created := at.Truncate(time.Second); created.Before(w.From) || created.After(w.To) {
			t.Errorf("created %s outside %s", created, w)
		}
	}
	if w := (ProviderClock{}).Window(from, to, time.Second, 2*time.Minute); w.From != local.Add(-2*time.Minute) || w.To != local.Add(2*time.Minute+2*time.Second) {
		t.Errorf("unknown clock: window = %s", w)
	}
	if got := c.Earliest(local); !got.Equal(local.Add(5 * time.Second)) {
		t.Errorf("Earliest = %s", got)
	}
}
