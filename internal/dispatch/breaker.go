package dispatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// Breaker states, as the metric shows them.
const (
	breakerClosed   = 0
	breakerHalfOpen = 1
	breakerOpen     = 2
)

// breaker stops the dispatcher hammering a provider that does not answer.
// After threshold consecutive failures with no answer (time-outs, resets,
// 5xx), it opens: no request is sent for a cool-down (2 s, doubling up to a
// minute while failures go on); then one probe goes out; an answer closes
// it, a failure opens it again. Donations keep being accepted throughout,
// and wait in line. Probes, not retry storms.
type breaker struct {
	threshold int
	minCool   time.Duration
	maxCool   time.Duration

	mu       sync.Mutex
	state    int
	failures int
	cool     time.Duration
	until    time.Time // open until
	probing  bool
	changed  chan struct{} // closed and replaced on every change
}

func newBreaker() *breaker {
	return &breaker{threshold: 5, minCool: 2 * time.Second, maxCool: time.Minute, cool: 2 * time.Second,
		changed: make(chan struct{})}
}

// allow waits until a request may go. probe reports that this request is
// the half-open breaker's one probe.
func (b *breaker) allow(ctx context.Context, clock floodgate.Clock) (probe bool, err error) {
	for {
		b.mu.Lock()
		now := clock.Now()
		if b.state == breakerOpen && !now.Before(b.until) {
			b.state = breakerHalfOpen
		}
		switch {
		case b.state == breakerClosed:
			b.mu.Unlock()
			return false, nil
		case b.state == breakerHalfOpen && !b.probing:
			b.probing = true
			b.mu.Unlock()
			return true, nil
		}
		wait := b.until.Sub(now)
		if b.state == breakerHalfOpen || wait <= 0 {
			wait = 100 * time.Millisecond
		}
		changed := b.changed
		b.mu.Unlock()
		t := clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-changed:
		case <-t.C():
		}
		t.Stop()
	}
}

// record counts a request's outcome.
func (b *breaker) record(err error, probe bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, errKeyExpired) {
		// Abandoned (shutdown), or never sent (the key was too old): it
		// says nothing of the provider. A probe's turn passes to the next.
		return
	}
	if !unanswered(err) {
		if b.state != breakerClosed || b.failures > 0 {
			b.state, b.failures, b.cool = breakerClosed, 0, b.minCool
			b.signal()
		}
		return
	}
	b.failures++
	if probe || (b.state == breakerClosed && b.failures >= b.threshold) {
		if probe {
			b.cool = min(b.cool*2, b.maxCool)
		}
		b.state, b.until = breakerOpen, now.Add(b.cool)
		b.signal()
	}
}

func (b *breaker) signal() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// due reports whether the breaker waits for a probe at now: open past
// its cool-down, or half-open with no probe out.
func (b *breaker) due(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return (b.state == breakerOpen && !now.Before(b.until)) || (b.state == breakerHalfOpen && !b.probing)
}

// status returns the state and, when open, until when.
func (b *breaker) status() (int, time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state, b.until
}

// unanswered reports whether err says the provider did not answer at all,
// or failed on its side: what the breaker counts (record has already set
// aside requests abandoned or never sent).
func unanswered(err error) bool {
	if err == nil {
		return false
	}
	var pe *floodgate.ProviderError
	if errors.As(err, &pe) {
		return pe.Kind == floodgate.ProviderNetwork || pe.Kind == floodgate.ProviderServer
	}
	return true // a transport error, a deadline
}
