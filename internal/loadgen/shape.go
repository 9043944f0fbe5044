package loadgen

import (
	"fmt"
	"math"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Shape is an open-model arrival curve over a bounded run. It paces
// vegeta's attacker and, because the report measures latency from the
// moment a request was due, it can also say when any hit was due.
//
// Hit n (counting from 0) is due at the first instant the cumulative
// number of hits, the integral of the rate, reaches n+1: a constant 50/s
// for 3 s intends hits at 20 ms, 40 ms, ..., 3 s, 150 in all.
type Shape interface {
	vegeta.Pacer
	// Hits is the number of hits due by elapsed time t (the integral of
	// the rate from 0 to t); t is clamped to the run.
	Hits(t time.Duration) float64
	// Intended is when hit n is due, from the start of the run. A hit
	// beyond Total is never due; Intended answers the run's length for it.
	Intended(n uint64) time.Duration
	// Total is the number of hits the shape intends over the whole run.
	Total() uint64
	// Length is the run's length.
	Length() time.Duration
	String() string
}

// curve is what each shape defines; the rest (pacing, inversion) is
// shared.
type curve interface {
	rateAt(t float64) float64 // hits per second at t seconds
	hitsAt(t float64) float64 // hits due in [0, t], t in seconds within the run
	length() time.Duration
}

// hitsEpsilon absorbs floating-point error in the integrals, so that a
// constant 50/s over 3 s intends 150 hits, not 149.
const hitsEpsilon = 1e-7

func hitsOf(c curve, t time.Duration) float64 {
	t = min(max(t, 0), c.length())
	return c.hitsAt(t.Seconds())
}

func totalOf(c curve) uint64 {
	h := c.hitsAt(c.length().Seconds())
	if h <= 0 {
		return 0
	}
	return uint64(math.Floor(h + hitsEpsilon))
}

// intendedOf inverts the cumulative hits by bisection over whole
// nanoseconds: about 40 steps for a run of an hour, each a closed-form
// integral, cheap enough to call once per hit at tens of thousands of hits
// per second.
func intendedOf(c curve, n uint64) time.Duration {
	target := float64(n) + 1 - hitsEpsilon
	lo, hi := time.Duration(0), c.length()
	if c.hitsAt(hi.Seconds()) < target {
		return hi
	}
	// Invariant: hits(lo) < target <= hits(hi), or lo is 0.
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if c.hitsAt(mid.Seconds()) >= target {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// paceOf is vegeta's Pace for any curve: wait until the next hit is due
// (not at all when behind: the attacker catches up at once, which is what
// open arrivals mean), and stop after the last hit of the run.
func paceOf(c curve, elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= totalOf(c) {
		return 0, true
	}
	return max(intendedOf(c, hits)-elapsed, 0), false
}

func rateOf(c curve, elapsed time.Duration) float64 {
	if elapsed < 0 || elapsed > c.length() {
		return 0
	}
	return c.rateAt(elapsed.Seconds())
}

// Constant is PerSecond hits per second for Duration.
type Constant struct {
	PerSecond float64
	Duration  time.Duration
}

var _ Shape = Constant{}

func (s Constant) rateAt(float64) float64       { return s.PerSecond }
func (s Constant) hitsAt(t float64) float64     { return s.PerSecond * t }
func (s Constant) length() time.Duration        { return s.Duration }
func (s Constant) Length() time.Duration        { return s.Duration }
func (s Constant) Total() uint64                { return totalOf(s) }
func (s Constant) Hits(t time.Duration) float64 { return hitsOf(s, t) }

// Intended is exact for a constant rate: hit n is due at (n+1)/PerSecond.
func (s Constant) Intended(n uint64) time.Duration {
	if n >= s.Total() {
		return s.Duration
	}
	return min(time.Duration(float64(n+1)/s.PerSecond*float64(time.Second)), s.Duration)
}

func (s Constant) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	if hits >= s.Total() {
		return 0, true
	}
	return max(s.Intended(hits)-elapsed, 0), false
}

func (s Constant) Rate(elapsed time.Duration) float64 { return rateOf(s, elapsed) }

func (s Constant) String() string {
	return fmt.Sprintf("constant %s/s for %s", fmtRate(s.PerSecond), s.Duration)
}

// Ramp climbs linearly from From to To hits per second over Over, then
// stays at To until Duration. Over 0 means the whole run.
type Ramp struct {
	From, To       float64
	Over, Duration time.Duration
}

var _ Shape = Ramp{}

func (s Ramp) over() float64 {
	if s.Over <= 0 || s.Over > s.Duration {
		return s.Duration.Seconds()
	}
	return s.Over.Seconds()
}

func (s Ramp) rateAt(t float64) float64 {
	u := s.over()
	if t >= u || u == 0 {
		return s.To
	}
	return s.From + (s.To-s.From)*t/u
}

func (s Ramp) hitsAt(t float64) float64 {
	u := s.over()
	if u == 0 {
		return s.To * t
	}
	if t <= u {
		return s.From*t + (s.To-s.From)*t*t/(2*u)
	}
	return (s.From+s.To)/2*u + s.To*(t-u)
}

func (s Ramp) length() time.Duration           { return s.Duration }
func (s Ramp) Length() time.Duration           { return s.Duration }
func (s Ramp) Total() uint64                   { return totalOf(s) }
func (s Ramp) Hits(t time.Duration) float64    { return hitsOf(s, t) }
func (s Ramp) Intended(n uint64) time.Duration { return intendedOf(s, n) }
func (s Ramp) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	return paceOf(s, elapsed, hits)
}
func (s Ramp) Rate(elapsed time.Duration) float64 { return rateOf(s, elapsed) }

func (s Ramp) String() string {
	return fmt.Sprintf("ramp %s/s to %s/s over %s, for %s", fmtRate(s.From), fmtRate(s.To),
		time.Duration(s.over()*float64(time.Second)).Round(time.Millisecond), s.Duration)
}

// Spike is the night of an appeal: Base hits per second (near zero) for
// Lead, a linear climb to Peak in Ramp (the host makes the ask), Hold at
// the peak, then an exponential decay back towards Base with time
// constant Decay (after one Decay the excess over Base is down to 37%,
// after three to 5%). Duration bounds the whole run and may cut any part.
type Spike struct {
	Base, Peak              float64
	Lead, Ramp, Hold, Decay time.Duration
	Duration                time.Duration
}

var _ Shape = Spike{}

// marks are the ends of the lead, the climb and the hold, in seconds.
func (s Spike) marks() (t1, t2, t3 float64) {
	t1 = s.Lead.Seconds()
	t2 = t1 + s.Ramp.Seconds()
	t3 = t2 + s.Hold.Seconds()
	return t1, t2, t3
}

func (s Spike) rateAt(t float64) float64 {
	t1, t2, t3 := s.marks()
	switch {
	case t < t1:
		return s.Base
	case t < t2:
		return s.Base + (s.Peak-s.Base)*(t-t1)/(t2-t1)
	case t < t3:
		return s.Peak
	case s.Decay <= 0:
		return s.Base
	}
	return s.Base + (s.Peak-s.Base)*math.Exp(-(t-t3)/s.Decay.Seconds())
}

func (s Spike) hitsAt(t float64) float64 {
	t1, t2, t3 := s.marks()
	if t <= t1 {
		return s.Base * t
	}
	h := s.Base * t1
	if t <= t2 {
		d := t - t1
		return h + s.Base*d + (s.Peak-s.Base)*d*d/(2*(t2-t1))
	}
	h += (s.Base + s.Peak) / 2 * (t2 - t1)
	if t <= t3 {
		return h + s.Peak*(t-t2)
	}
	h += s.Peak * (t3 - t2)
	d := t - t3
	if s.Decay <= 0 {
		return h + s.Base*d
	}
	tau := s.Decay.Seconds()
	return h + s.Base*d + (s.Peak-s.Base)*tau*(1-math.Exp(-d/tau))
}

func (s Spike) length() time.Duration           { return s.Duration }
func (s Spike) Length() time.Duration           { return s.Duration }
func (s Spike) Total() uint64                   { return totalOf(s) }
func (s Spike) Hits(t time.Duration) float64    { return hitsOf(s, t) }
func (s Spike) Intended(n uint64) time.Duration { return intendedOf(s, n) }
func (s Spike) Pace(elapsed time.Duration, hits uint64) (time.Duration, bool) {
	return paceOf(s, elapsed, hits)
}
func (s Spike) Rate(elapsed time.Duration) float64 { return rateOf(s, elapsed) }

func (s Spike) String() string {
	return fmt.Sprintf("spike %s/s for %s, up to %s/s in %s, held %s, decay %s, for %s",
		fmtRate(s.Base), s.Lead, fmtRate(s.Peak), s.Ramp, s.Hold, s.Decay, s.Duration)
}

func fmtRate(r float64) string {
	if r == math.Trunc(r) {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.3g", r)
}
