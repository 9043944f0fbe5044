package dispatch

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/floodgate/floodgate"
)

// gate paces one kind of provider request: the PaymentIntent budget, or
// the budget of every provider request.
type gate interface {
	// Wait blocks until one more request may be sent.
	Wait(ctx context.Context) error
	// SlowDown reports a 429: the rate is halved.
	SlowDown(now time.Time)
	// Grow is called once a second: the rate climbs back after a cut.
	Grow(now time.Time)
	// Rate is the current rate, per second.
	Rate() float64
}

var (
	_ gate = (*pacer)(nil)
	_ gate = (*sharedGate)(nil)
)

// sharedGate paces against a budget in the store that every node's
// dispatcher draws on, so that the nodes together never exceed the
// provider's limit, and a 429 seen by any node slows them all. Permits are
// fetched a fifth of a second's worth at a time and spent evenly, at the
// shared rate, by a local limiter.
type sharedGate struct {
	store      floodgate.Budgets
	name       string
	configured float64
	clock      floodgate.Clock
	log        *slog.Logger

	fetch sync.Mutex // one fetch at a time per node

	mu      sync.Mutex
	permits int
	rate    float64
	cut     bool
	lim     *rate.Limiter
}

func newSharedGate(store floodgate.Budgets, name string, r float64, clock floodgate.Clock, log *slog.Logger) *sharedGate {
	return &sharedGate{store: store, name: name, configured: r, clock: clock, log: log, rate: r,
		lim: rate.NewLimiter(rate.Limit(r), 1)}
}

func (g *sharedGate) take() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.permits > 0 {
		g.permits--
		return true
	}
	return false
}

// Wait implements gate.
func (g *sharedGate) Wait(ctx context.Context) error {
	if err := wait(ctx, g.clock, g.lim); err != nil {
		return err
	}
	for {
		if g.take() {
			return nil
		}
		g.fetch.Lock()
		if g.take() { // another worker fetched meanwhile
			g.fetch.Unlock()
			return nil
		}
		g.mu.Lock()
		cut := g.cut
		g.cut = false
		want := max(1, int(math.Ceil(g.rate/5)))
		g.mu.Unlock()
		grant, err := g.store.TakeBudget(ctx, floodgate.BudgetRequest{Name: g.name, Rate: g.configured, Want: want, Cut: cut, Now: g.clock.Now()})
		g.fetch.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			g.log.Warn("dispatch: taking from the shared budget failed", "budget", g.name, "err", err)
			if !floodgate.Sleep(ctx, g.clock, 100*time.Millisecond) {
				return ctx.Err()
			}
			continue
		}
		g.mu.Lock()
		g.permits += grant.Granted
		g.rate = grant.Rate
		g.lim.SetLimitAt(g.clock.Now(), rate.Limit(grant.Rate))
		g.mu.Unlock()
		if grant.Granted == 0 && !floodgate.Sleep(ctx, g.clock, max(10*time.Millisecond, time.Duration(float64(time.Second)/math.Max(grant.Rate, 0.1)))) {
			return ctx.Err()
		}
	}
}

// SlowDown implements gate: the cut is reported with the next fetch, and
// this node slows at once.
func (g *sharedGate) SlowDown(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = true
	g.rate = math.Max(0.5, g.rate/2)
	g.lim.SetLimitAt(now, rate.Limit(g.rate))
}

// Grow implements gate: growth happens in the shared budget itself.
func (g *sharedGate) Grow(now time.Time) {}

// Rate implements gate.
func (g *sharedGate) Rate() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rate
}
