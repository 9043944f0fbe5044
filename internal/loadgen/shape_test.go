package loadgen

import (
	"math"
	"testing"
	"time"
)

func testShapes() map[string]Shape {
	return map[string]Shape{
		"constant 50/s":      Constant{PerSecond: 50, Duration: 3 * time.Second},
		"constant 0.7/s":     Constant{PerSecond: 0.7, Duration: 10 * time.Second},
		"ramp 0 to 100":      Ramp{From: 0, To: 100, Duration: 10 * time.Second},
		"ramp 10 to 200, 4s": Ramp{From: 10, To: 200, Over: 4 * time.Second, Duration: 6 * time.Second},
		"ramp down":          Ramp{From: 300, To: 20, Duration: 5 * time.Second},
		"spike": Spike{Base: 1, Peak: 500, Lead: 2 * time.Second, Ramp: 3 * time.Second, Hold: 2 * time.Second,
			Decay: 4 * time.Second, Duration: 20 * time.Second},
		"spike cut short": Spike{Base: 2, Peak: 100, Lead: time.Second, Ramp: 2 * time.Second, Hold: 10 * time.Second,
			Decay: time.Second, Duration: 5 * time.Second},
		"spike, sudden": Spike{Base: 0, Peak: 200, Lead: time.Second, Hold: time.Second, Duration: 4 * time.Second},
	}
}

// TestShapeTotals holds each shape's total to its integral, worked out by
// hand.
func TestLoadShapeTotals(t *testing.T) {
	tau := 4.0
	spike := 1*2 + (1+500)/2.0*3 + 500*2 + 1*13 + 499*tau*(1-math.Exp(-13/tau))
	for _, tc := range []struct {
		shape Shape
		want  uint64
	}{
		{Constant{PerSecond: 50, Duration: 3 * time.Second}, 150},
		{Constant{PerSecond: 0.7, Duration: 10 * time.Second}, 7},
		{Ramp{From: 0, To: 100, Duration: 10 * time.Second}, 500},
		{Ramp{From: 10, To: 200, Over: 4 * time.Second, Duration: 6 * time.Second}, 420 + 400},
		{Spike{Base: 1, Peak: 500, Lead: 2 * time.Second, Ramp: 3 * time.Second, Hold: 2 * time.Second,
			Decay: 4 * time.Second, Duration: 20 * time.Second}, uint64(spike)},
		{Spike{Base: 0, Peak: 200, Lead: time.Second, Hold: time.Second, Duration: 4 * time.Second}, 200},
	} {
		if got := tc.shape.Total(); got != tc.want {
			t.Errorf("%s: Total = %d, want %d", tc.shape, got, tc.want)
		}
	}
}

// TestShapePaceMatchesIntended drives each shape's Pace as vegeta does,
// on a virtual clock that sleeps exactly as told, and checks that every
// hit goes at the moment Intended says, that Hits agrees, and that the
// pacer stops after Total hits.
func TestLoadShapePaceMatchesIntended(t *testing.T) {
	const tolerance = time.Microsecond
	for name, s := range testShapes() {
		t.Run(name, func(t *testing.T) {
			var elapsed time.Duration
			total := s.Total()
			if total == 0 {
				t.Fatal("shape intends no hit")
			}
			for n := uint64(0); ; n++ {
				wait, stop := s.Pace(elapsed, n)
				if n == total {
					if !stop {
						t.Fatalf("Pace did not stop after %d hits", total)
					}
					break
				}
				if stop {
					t.Fatalf("Pace stopped at hit %d of %d", n, total)
				}
				if wait < 0 {
					t.Fatalf("hit %d: negative wait %s", n, wait)
				}
				elapsed += wait
				want := s.Intended(n)
				if d := elapsed - want; d > tolerance || d < -tolerance {
					t.Fatalf("hit %d goes at %s, Intended says %s", n, elapsed, want)
				}
				if want > s.Length() {
					t.Fatalf("hit %d intended at %s, after the run's %s", n, want, s.Length())
				}
				if h := s.Hits(want); h < float64(n+1)-1e-6 {
					t.Fatalf("hit %d: Hits(Intended) = %f, below %d", n, h, n+1)
				}
				if want > tolerance {
					if h := s.Hits(want - tolerance); h >= float64(n+1) {
						t.Fatalf("hit %d: already due %s before its Intended time (Hits = %f)", n, tolerance, h)
					}
				}
				// Behind schedule, the pacer lets the hit go at once (open
				// arrivals catch up rather than shift).
				if w, _ := s.Pace(want+time.Second, n); w != 0 {
					t.Fatalf("hit %d: behind schedule, Pace waits %s", n, w)
				}
			}
		})
	}
}

// TestShapeRateIsTheDerivative checks Rate against Hits: the rate is the
// slope of the cumulative hits everywhere except at the corners.
func TestLoadShapeRateIsTheDerivative(t *testing.T) {
	for name, s := range testShapes() {
		t.Run(name, func(t *testing.T) {
			h := time.Millisecond
			for t0 := 50 * time.Millisecond; t0 < s.Length()-h; t0 += 97 * time.Millisecond {
				slope := (s.Hits(t0+h) - s.Hits(t0-h)) / (2 * h.Seconds())
				r := s.Rate(t0)
				if math.Abs(slope-r) > 0.01*math.Max(r, 1)+0.5 {
					// Corners of the piecewise shapes may fall inside the
					// window; compare on either side before failing.
					left, right := s.Rate(t0-h), s.Rate(t0+h)
					if slope < math.Min(left, right)-0.5 || slope > math.Max(left, right)+0.5 {
						t.Fatalf("at %s: rate %f, slope of Hits %f", t0, r, slope)
					}
				}
			}
		})
	}
}

func TestLoadSpikeShape(t *testing.T) {
	s := Spike{Base: 1, Peak: 1000, Lead: 5 * time.Second, Ramp: 2 * time.Second, Hold: 3 * time.Second,
		Decay: 10 * time.Second, Duration: time.Minute}
	for _, tc := range []struct {
		at   time.Duration
		want float64
	}{
		{0, 1}, {4 * time.Second, 1}, {6 * time.Second, 500.5}, {7 * time.Second, 1000}, {9 * time.Second, 1000},
		{20 * time.Second, 1 + 999*math.Exp(-1)}, {40 * time.Second, 1 + 999*math.Exp(-3)},
	} {
		if got := s.Rate(tc.at); math.Abs(got-tc.want) > 1e-6 {
			t.Errorf("Rate(%s) = %f, want %f", tc.at, got, tc.want)
		}
	}
	if r := s.Rate(2 * time.Minute); r != 0 {
		t.Errorf("Rate after the run = %f, want 0", r)
	}
}
