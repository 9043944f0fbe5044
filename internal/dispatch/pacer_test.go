package dispatch

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"
)

func TestPacerAIMD(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPacer(20, t0, clocktest.New(t0))
	p.SlowDown(t0)
	if p.Rate() != 10 {
		t.Fatalf("after a 429: %v, want 10", p.Rate())
	}
	p.SlowDown(t0.Add(time.Second)) // same overload: within the cool-down
	if p.Rate() != 10 {
		t.Fatalf("second 429 in the cool-down: %v, want 10", p.Rate())
	}
	p.Grow(t0.Add(time.Second))
	if p.Rate() != 10 {
		t.Fatalf("grew during the cool-down: %v", p.Rate())
	}
	p.Grow(t0.Add(3 * time.Second)) // 2s after the cut: +1/s for 2s
	if p.Rate() != 12 {
		t.Fatalf("after growth: %v, want 12", p.Rate())
	}
	p.Grow(t0.Add(time.Minute))
	if p.Rate() != 20 {
		t.Fatalf("never above configured: %v", p.Rate())
	}
	for i := range 20 {
		p.SlowDown(t0.Add(time.Minute + time.Duration(i)*3*time.Second))
	}
	if p.Rate() != 0.5 {
		t.Fatalf("floor: %v, want 0.5", p.Rate())
	}
}
