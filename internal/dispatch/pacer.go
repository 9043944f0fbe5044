package dispatch

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate/floodgate"
)

// pacer sends at most its current rate, which starts at the configured
// rate, halves on a provider 429 (at most once per cool-down, so a burst of
// 429s from one overload counts once), and climbs back by a twentieth of
// the configured rate per second without one: additive increase,
// multiplicative decrease, never above what was configured.
type pacer struct {
	mu         sync.Mutex
	configured float64
	current    float64
	floor      float64
	lastCut    time.Time
	lastGrow   time.Time
	cooldown   time.Duration
	lim        *rate.Limiter
	clock      floodgate.Clock
}

func newPacer(r float64, now time.Time, clock floodgate.Clock) *pacer {
	return &pacer{configured: r, current: r, floor: min(r, 0.5), lastGrow: now, cooldown: 2 * time.Second,
		lim: rate.NewLimiter(rate.Limit(r), 1), clock: clock}
}

// Wait blocks until the next send is allowed.
func (p *pacer) Wait(ctx context.Context) error { return wait(ctx, p.clock, p.lim) }

// wait takes one event from lim, sleeping on clock until it is due: the
// limiter is only ever told the clock's time.
func wait(ctx context.Context, clock floodgate.Clock, lim *rate.Limiter) error {
	now := clock.Now()
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return fmt.Errorf("dispatch: a rate of %v allows no request", lim.Limit())
	}
	if !floodgate.Sleep(ctx, clock, r.DelayFrom(now)) {
		r.CancelAt(clock.Now())
		return ctx.Err()
	}
	return nil
}

// Rate is the current rate.
func (p *pacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.current
}

// SlowDown halves the rate after a 429.
func (p *pacer) SlowDown(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.lastCut) < p.cooldown {
		return
	}
	p.lastCut, p.lastGrow = now, now
	p.current = max(p.floor, p.current/2)
	p.lim.SetLimitAt(now, rate.Limit(p.current))
}

// Grow adds back rate for the time since the last change, once the
// cool-down after a cut has passed.
func (p *pacer) Grow(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current >= p.configured || now.Sub(p.lastCut) < p.cooldown {
		p.lastGrow = now
		return
	}
	step := p.configured / 20 * now.Sub(p.lastGrow).Seconds()
	p.lastGrow = now
	p.current = min(p.configured, p.current+step)
	p.lim.SetLimitAt(now, rate.Limit(p.current))
}
