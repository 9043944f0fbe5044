package dispatch

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestPolicy(t *testing.T) {
	yes, no := true, false
	p := DefaultPolicy
	pe := func(kind floodgate.ProviderErrorKind, status int, code string) *floodgate.ProviderError {
		return &floodgate.ProviderError{Kind: kind, HTTPStatus: status, Code: code}
	}
	withRetry := func(e *floodgate.ProviderError, v *bool) *floodgate.ProviderError { e.ShouldRetry = v; return e }
	withAfter := func(e *floodgate.ProviderError, d time.Duration) *floodgate.ProviderError { e.RetryAfter = d; return e }
	young, old := time.Minute, 21*time.Hour

	tests := []struct {
		name   string
		err    error
		tries  int
		keyAge time.Duration
		action Action
		slow   bool
		wait   time.Duration // exact wait when set (rnd is fixed at 0.5)
	}{
		{"rate limit slows down and retries the same key", pe(floodgate.ProviderRateLimited, 429, "rate_limit"), 0, young, RetrySame, true, 125 * time.Millisecond},
		{"rate limit backs off exponentially", pe(floodgate.ProviderRateLimited, 429, "rate_limit"), 3, young, RetrySame, true, time.Second},
		{"backoff is capped", pe(floodgate.ProviderRateLimited, 429, "rate_limit"), 40, young, RetrySame, true, 15 * time.Second},
		{"Retry-After is honoured", withAfter(pe(floodgate.ProviderRateLimited, 429, "rate_limit"), 5*time.Second), 0, young, RetrySame, true, 5 * time.Second},
		{"lock timeout retries soon at the same pace", pe(floodgate.ProviderLockTimeout, 429, "lock_timeout"), 0, young, RetrySame, false, 300 * time.Millisecond},
		{"time-out retries the same key while it is kept", &floodgate.ProviderError{Kind: floodgate.ProviderNetwork}, 0, young, RetrySame, false, 125 * time.Millisecond},
		{"time-out on an old key is looked up", &floodgate.ProviderError{Kind: floodgate.ProviderNetwork}, 0, old, Reconcile, false, 0},
		{"a deadline is a time-out", fmt.Errorf("call: %w", context.DeadlineExceeded), 1, young, RetrySame, false, 250 * time.Millisecond},
		{"shutdown abandons", context.Canceled, 0, young, Abandon, false, 0},
		{"a stored 500 is unknown", pe(floodgate.ProviderServer, 500, "api_error"), 0, young, Reconcile, false, 0},
		{"a 5xx marked retryable retries the same key", withRetry(pe(floodgate.ProviderServer, 503, ""), &yes), 0, young, RetrySame, false, 125 * time.Millisecond},
		{"... but only a few times", withRetry(pe(floodgate.ProviderServer, 503, ""), &yes), 2, young, Reconcile, false, 0},
		{"a 5xx marked not retryable is unknown", withRetry(pe(floodgate.ProviderServer, 500, ""), &no), 0, young, Reconcile, false, 0},
		{"idempotency 400 (other parameters) is unknown", pe(floodgate.ProviderIdempotency, 400, "idempotency_error"), 0, young, Reconcile, false, 0},
		{"idempotency 409 (still executing) waits", pe(floodgate.ProviderIdempotency, 409, "idempotency_error"), 0, young, RetrySame, false, 125 * time.Millisecond},
		{"a decline is final", pe(floodgate.ProviderCard, 402, "card_declined"), 0, young, Final, false, 0},
		{"a plain 400 is final", pe(floodgate.ProviderInvalid, 400, "parameter_invalid_integer"), 0, young, Final, false, 0},
		{"payment method already used is unknown", pe(floodgate.ProviderInvalid, 400, "payment_method_unexpected_state"), 0, young, Reconcile, false, 0},
		{"bad credentials hold", pe(floodgate.ProviderAuth, 401, ""), 0, young, Hold, false, 10 * time.Second},
		{"should-retry false turns a rate limit into a lookup", withRetry(pe(floodgate.ProviderRateLimited, 429, "rate_limit"), &no), 0, young, Reconcile, true, 0},
		{"an old key is never resent after a rate limit", pe(floodgate.ProviderRateLimited, 429, "rate_limit"), 0, old, Reconcile, true, 0},
		{"a key past its retention is looked up, never resent", errKeyExpired, 0, young, Reconcile, false, 0},
		{"an unclassified error retries the same key", errors.New("boom"), 0, young, RetrySame, false, 125 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(tt.err, tt.tries, tt.keyAge, 0.5)
			if d.Action != tt.action || d.SlowDown != tt.slow {
				t.Fatalf("Decide = %v slow=%v (%s), want %v slow=%v", d.Action, d.SlowDown, d.Class, tt.action, tt.slow)
			}
			if d.Wait != tt.wait {
				t.Fatalf("Wait = %v, want %v", d.Wait, tt.wait)
			}
		})
	}
}

func TestBackoffIsFullJitter(t *testing.T) {
	p := DefaultPolicy
	if got := p.Backoff(0, 0); got != 0 {
		t.Fatalf("Backoff(0, 0) = %v", got)
	}
	if got := p.Backoff(2, 0.999999); got > time.Second || got < 999*time.Millisecond {
		t.Fatalf("Backoff(2, ~1) = %v, want just under 1s", got)
	}
	if got := p.Backoff(1000, 0.999999); got > p.Cap {
		t.Fatalf("Backoff beyond cap: %v", got)
	}
}
