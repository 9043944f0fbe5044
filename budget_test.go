package floodgate

import (
	"testing"
	"time"
)

func TestBudgetTake(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	take := func(st BudgetState, at time.Duration, want int, cut bool) (BudgetState, BudgetGrant) {
		return st.Take(BudgetRequest{Name: "b", Rate: 20, Want: want, Cut: cut, Now: t0.Add(at)})
	}
	st, g := take(BudgetState{}, 0, 10, false)
	if g.Granted != 1 || g.Rate != 20 {
		t.Fatalf("new budget: %+v", g)
	}
	// A second later: 20 permits earned, but the bucket holds only half a
	// second's worth.
	st, g = take(st, time.Second, 100, false)
	if g.Granted != 10 {
		t.Fatalf("after a second: %+v, want the burst of 10", g)
	}
	// Two callers at the same instant share what there is.
	st, g = take(st, time.Second+100*time.Millisecond, 3, false)
	st2, g2 := take(st, time.Second+100*time.Millisecond, 3, false)
	if g.Granted+g2.Granted != 2 {
		t.Fatalf("100ms of 20/s shared by two: %d + %d, want 2", g.Granted, g2.Granted)
	}
	st = st2
	// Over a long run the grants never exceed the rate.
	total := 0
	for i := range 1000 {
		var g BudgetGrant
		st, g = take(st, 2*time.Second+time.Duration(i)*10*time.Millisecond, 5, false)
		total += g.Granted
	}
	if total > 20*10+10 {
		t.Fatalf("granted %d in 10 s at 20/s", total)
	}
	// A 429 halves the rate once per cool-down, and it climbs back.
	at := 20 * time.Second
	st, g = take(st, at, 0, true)
	if g.Rate != 10 {
		t.Fatalf("after a cut: %v, want 10", g.Rate)
	}
	st, g = take(st, at+time.Second, 0, true)
	if g.Rate != 10 {
		t.Fatalf("a second cut in the cool-down: %v, want 10", g.Rate)
	}
	st, g = take(st, at+BudgetCooldown+4*time.Second, 0, false)
	if g.Rate <= 10 || g.Rate > 20 {
		t.Fatalf("climbing back: %v", g.Rate)
	}
	_, g = take(st, at+time.Minute, 0, false)
	if g.Rate != 20 {
		t.Fatalf("never above configured: %v", g.Rate)
	}
	// The configured rate lowered takes effect at once.
	_, g = st.Take(BudgetRequest{Name: "b", Rate: 5, Want: 0, Now: t0.Add(time.Hour)})
	if g.Rate != 5 {
		t.Fatalf("lowered configuration: %v", g.Rate)
	}
	// Time going backwards grants nothing new.
	before := st
	_, g = take(before, at, 100, false)
	if g.Granted > int(before.Tokens) {
		t.Fatalf("a clock behind earned permits: %+v from %+v", g, before)
	}
}
