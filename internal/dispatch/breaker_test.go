package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
)

// TestBreaker runs on a clock the test moves: a request the breaker holds
// is seen waiting on it (WaitTimers), and goes only once the clock is
// moved past the cool-down, however fast the machine.
func TestBreaker(t *testing.T) {
	b := newBreaker()
	b.minCool, b.cool = 50*time.Millisecond, 50*time.Millisecond
	ctx := context.Background()
	clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
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
	allow := func() <-chan bool {
		ch := make(chan bool, 1)
		go func() {
			p, err := b.allow(ctx, clock)
			if err != nil {
				panic(err)
			}
			ch <- p
		}()
		return ch
	}
	waiting := func(ch <-chan bool, what string) {
		t.Helper()
		clock.WaitTimers(1)
		select {
		case <-ch:
			t.Fatalf("%s: a request went", what)
		default:
		}
	}
	_, until := b.status()
	first := allow()
	waiting(first, "open, before the cool-down")
	clock.Advance(until.Sub(clock.Now()))
	if p := <-first; !p {
		t.Fatal("the first request after the cool-down is not the probe")
	}
	second := allow()
	waiting(second, "the probe is out")
	clock.Advance(100 * time.Millisecond) // its re-check: the probe is still out
	waiting(second, "the probe is still out")

	// The probe fails: open again, for twice as long.
	failed := clock.Now()
	b.record(down, true, failed)
	if st, until := b.status(); st != breakerOpen || until.Sub(failed) != 100*time.Millisecond {
		t.Fatalf("after a failed probe: state %d until %v after it failed, want 100ms", st, until.Sub(failed))
	}
	waiting(second, "open again")
	clock.Advance(100 * time.Millisecond)
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
