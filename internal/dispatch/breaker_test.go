package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestBreaker(t *testing.T) {
	b := newBreaker()
	b.minCool, b.cool = 50*time.Millisecond, 50*time.Millisecond
	ctx := context.Background()
	clock := floodgate.SystemClock{}
	down := &floodgate.ProviderError{Kind: floodgate.ProviderNetwork}

	// Answers, even refusals, keep it closed; unanswered calls below the
	// threshold too.
	b.record(&floodgate.ProviderError{Kind: floodgate.ProviderCard}, false, clock.Now())
	b.record(&floodgate.ProviderError{Kind: floodgate.ProviderRateLimited}, false, clock.Now())
	for range b.threshold - 1 {
		b.record(down, false, clock.Now())
	}
	if st, _ := b.status(); st != breakerClosed {
		t.Fatalf("state %d before the threshold", st)
	}
	b.record(errors.New("dial tcp: connection refused"), false, clock.Now())
	if st, _ := b.status(); st != breakerOpen {
		t.Fatalf("state %d after the threshold, want open", st)
	}
	// Shutdown says nothing of the provider.
	b.record(context.Canceled, false, clock.Now())
	if st, _ := b.status(); st != breakerOpen {
		t.Fatal("a canceled call closed the breaker")
	}

	// While open, nothing goes until the cool-down; then one probe.
	_, until := b.status()
	probe, err := b.allow(ctx, clock)
	if err != nil || !probe || clock.Now().Before(until) {
		t.Fatalf("allow while open: probe %v err %v, %v before the cool-down ended", probe, err, until.Sub(clock.Now()))
	}
	second := make(chan bool, 1)
	go func() {
		p, _ := b.allow(ctx, clock)
		second <- p
	}()
	select {
	case <-second:
		t.Fatal("a second request went while the probe was out")
	case <-time.After(100 * time.Millisecond):
	}
	// The probe fails: open again, for twice as long.
	failed := clock.Now()
	b.record(down, true, failed)
	if st, until := b.status(); st != breakerOpen || until.Sub(failed) != 100*time.Millisecond {
		t.Fatalf("after a failed probe: state %d until %v after it failed, want 100ms", st, until.Sub(failed))
	}
	if p := <-second; !p {
		t.Fatal("the waiting request was not the next probe")
	}
	// That probe is never sent (its key was too old): the breaker learns
	// nothing and the next request probes.
	if st, _ := b.status(); st != breakerHalfOpen {
		t.Fatalf("state %d while the second probe is out, want half-open", st)
	}
	b.record(errKeyExpired, true, clock.Now())
	if st, _ := b.status(); st != breakerHalfOpen {
		t.Fatalf("after a probe never sent: state %d, want half-open", st)
	}
	if p, err := b.allow(ctx, clock); !p || err != nil {
		t.Fatalf("after a probe never sent: probe %v err %v, want the next probe", p, err)
	}
	// That probe succeeds: closed, and everyone goes.
	b.record(nil, true, clock.Now())
	if st, _ := b.status(); st != breakerClosed {
		t.Fatalf("after a good probe: %d", st)
	}
	if p, err := b.allow(ctx, clock); p || err != nil {
		t.Fatalf("closed: probe %v err %v", p, err)
	}
	cctx, cancel := context.WithCancel(ctx)
	for range b.threshold {
		b.record(down, false, clock.Now())
	}
	cancel()
	if _, err := b.allow(cctx, clock); !errors.Is(err, context.Canceled) {
		t.Fatalf("allow on a canceled context: %v", err)
	}
}
