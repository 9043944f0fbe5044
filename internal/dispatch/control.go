package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/startstop"
)

// PauseSetting is the shared setting that pauses charging on every node.
const PauseSetting = "charging_paused"

// ControlOptions configure a Control.
type ControlOptions struct {
	Clock  floodgate.Clock
	Logger *slog.Logger
}

// Control is the switch and the gauge of charging on this node: the
// operator's pause switch (a setting every node shares, read once a
// second), the breaker that stops calls to a provider that does not
// answer, and the provider's health that readiness reports. Every
// provider call waits for it and reports back to it (Link).
type Control struct {
	startstop.Base
	store  floodgate.Settings
	clock  floodgate.Clock
	log    *slog.Logger
	paused atomic.Bool
	// pauses counts this node's own Pause calls: a refresh that read the
	// shared setting before one of them must not undo it.
	pauses  atomic.Int64
	breaker *breaker
	health  providerHealth

	mu      sync.Mutex
	resumed []func() // told when an operator resumes charging here
}

var _ startstop.Service = (*Control)(nil)

// NewControl returns a Control; nothing runs until Start.
func NewControl(store floodgate.Settings, opts ControlOptions) *Control {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	return &Control{store: store, clock: opts.Clock, log: logger(opts.Logger), breaker: newBreaker()}
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// Start reads the pause switch, then keeps reading it once a second.
func (c *Control) Start(ctx context.Context) error {
	ctx, ok := c.StartInit(ctx)
	if !ok {
		return nil
	}
	c.refreshPause(ctx)
	c.Go(func(ctx context.Context) { floodgate.Every(ctx, c.clock, time.Second, c.refreshPause) })
	return c.StartDone(nil)
}

// onResume registers f to be told when an operator resumes charging on
// this node.
func (c *Control) onResume(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resumed = append(c.resumed, f)
}

// Charging reports whether this node charges now and, while it waits for
// the provider, when it probes next.
func (c *Control) Charging() (floodgate.ChargingState, time.Time) {
	if c.paused.Load() {
		return floodgate.ChargingPaused, time.Time{}
	}
	if state, until := c.breaker.status(); state != breakerClosed {
		return floodgate.ChargingWaiting, until
	}
	return floodgate.ChargingRunning, time.Time{}
}

// Pause pauses or resumes charging on every node: the switch is a shared
// setting, applied here at once and by other nodes within a second.
func (c *Control) Pause(ctx context.Context, paused bool) error {
	c.pauses.Add(1)
	if err := c.store.SetSetting(ctx, PauseSetting, strconv.FormatBool(paused), c.clock.Now()); err != nil {
		return err
	}
	c.mu.Lock()
	c.pauses.Add(1)
	c.paused.Store(paused)
	c.mu.Unlock()
	if !paused {
		c.mu.Lock()
		resumed := c.resumed
		c.mu.Unlock()
		for _, f := range resumed {
			f()
		}
	}
	return nil
}

// BreakerState is 0 closed, 1 half-open, 2 open (a metric).
func (c *Control) BreakerState() float64 {
	state, _ := c.breaker.status()
	return float64(state)
}

// Paused is 1 while an operator has paused charging (a metric).
func (c *Control) Paused() float64 {
	if c.paused.Load() {
		return 1
	}
	return 0
}

// ProviderUp is 1 while the provider answers, else 0 (a metric).
func (c *Control) ProviderUp() float64 { return c.health.up(c.clock.Now()) }

// refreshPause applies the shared pause switch as other nodes set it,
// unless this node's own Pause ran while it was being read (its value is
// newer than the one read).
func (c *Control) refreshPause(ctx context.Context) {
	before := c.pauses.Load()
	v, _, err := c.store.Setting(ctx, PauseSetting)
	apply := func(paused bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.pauses.Load() == before {
			c.paused.Store(paused)
		}
	}
	switch {
	case err == nil:
		apply(v == "true")
	case floodgate.ErrorCode(err) == floodgate.ENOTFOUND:
		apply(false)
	case ctx.Err() == nil:
		c.log.Warn("dispatch: reading the pause switch failed", "err", err)
	}
}

// waitUnpaused blocks while an operator has paused charging.
func (c *Control) waitUnpaused(ctx context.Context) error {
	for c.paused.Load() {
		if !floodgate.Sleep(ctx, c.clock, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// allow waits until the breaker lets a request go; probe reports that it
// is the half-open breaker's one probe.
func (c *Control) allow(ctx context.Context) (probe bool, err error) {
	return c.breaker.allow(ctx, c.clock)
}

// record counts a request's outcome in the breaker (probe: it was the
// probe allow let go).
func (c *Control) record(err error, probe bool) {
	c.breaker.record(err, probe, c.clock.Now())
}

// probeDue reports whether the breaker waits for a probe now.
func (c *Control) probeDue() bool { return c.breaker.due(c.clock.Now()) }

// Ready reports whether this node can serve. An unreachable provider does
// not make it unready: donations are still accepted and kept, and charging
// waits (the contract's "provider reachable or its breaker open"); taking
// every node out of a load balancer during a provider outage would lose
// the very donors floodgate exists to keep. Refused credentials, a
// configuration fault, do make it unready. The note says what charging is
// waiting for, if anything.
func (c *Control) Ready(ctx context.Context) (note string, err error) {
	if !c.Running() {
		return "", errors.New("dispatcher not started")
	}
	return c.health.ready(c.clock.Now())
}
