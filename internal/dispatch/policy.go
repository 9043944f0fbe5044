package dispatch

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/floodgate/floodgate"
)

// Action is what the dispatcher does after a failed provider call.
type Action int

const (
	// RetrySame sends the same request with the same key after Wait.
	RetrySame Action = iota
	// Reconcile looks the payment up: the call may or may not have
	// charged, and resending the key cannot tell.
	Reconcile
	// Final records the donation as failed.
	Final
	// Hold keeps the donation and waits: the provider refuses every call
	// (bad credentials); an operator must act.
	Hold
	// Abandon stops work on the donation for now without settling it: the
	// dispatcher is shutting down. Its lease lets it resume later.
	Abandon
)

func (a Action) String() string {
	return [...]string{"retry_same_key", "reconcile", "final", "hold", "abandon"}[a]
}

// Decision is the policy's answer.
type Decision struct {
	Action Action
	Wait   time.Duration
	// SlowDown asks the pacer to lower the send rate.
	SlowDown bool
	// Class labels the error for metrics and logs.
	Class string
}

// Policy decides retries per error class. It is a pure function of its
// inputs: tests give it a fixed random number.
type Policy struct {
	// Base and Cap bound exponential backoff (full jitter).
	Base, Cap time.Duration
	// KeyRetention is how long after its first use a key is surely kept by
	// the provider (Stripe keeps keys at least 24 h; 20 h leaves a margin).
	KeyRetention time.Duration
	// ServerRetries bounds same-key retries of a 5xx the provider marks
	// Stripe-Should-Retry: true before the outcome is looked up.
	ServerRetries int
}

// DefaultPolicy is the policy floodgate runs with against Stripe.
var DefaultPolicy = Policy{Base: 250 * time.Millisecond, Cap: 30 * time.Second, KeyRetention: 20 * time.Hour, ServerRetries: 2}

// PolicyFor is DefaultPolicy for a provider that surely keeps keys for
// keyRetention after their first use.
func PolicyFor(keyRetention time.Duration) Policy {
	p := DefaultPolicy
	if keyRetention > 0 {
		p.KeyRetention = keyRetention
	}
	return p
}

// reconcileCodes are 400s that say the request may have been applied
// before: the outcome is unknown, never failed.
var reconcileCodes = map[string]bool{
	"payment_intent_unexpected_state": true,
	"payment_method_unexpected_state": true,
}

// Backoff is full jitter: a uniform wait up to min(Cap, Base*2^tries).
func (p Policy) Backoff(tries int, rnd float64) time.Duration {
	ceil := float64(p.Cap)
	if tries < 62 {
		ceil = math.Min(ceil, float64(p.Base)*math.Pow(2, float64(tries)))
	}
	return time.Duration(rnd * ceil)
}

// Decide classifies err, the failure of attempt number tries (0 first) on
// a key first used keyAge ago. rnd is uniform in [0, 1).
func (p Policy) Decide(err error, tries int, keyAge time.Duration, rnd float64) Decision {
	if errors.Is(err, context.Canceled) {
		return Decision{Action: Abandon, Class: "canceled"}
	}
	if errors.Is(err, errKeyExpired) {
		return Decision{Action: Reconcile, Class: "key_expired"}
	}
	var pe *floodgate.ProviderError
	if !errors.As(err, &pe) {
		// Anything else (a deadline, a broken connection) left no answer.
		pe = &floodgate.ProviderError{Kind: floodgate.ProviderNetwork, Err: err}
	}
	wait := p.Backoff(tries, rnd)
	if pe.RetryAfter > 0 {
		wait = max(wait, pe.RetryAfter)
	}
	sameKeyOK := keyAge < p.KeyRetention
	d := Decision{Class: string(pe.Kind)}
	switch pe.Kind {
	case floodgate.ProviderRateLimited:
		d.Action, d.Wait, d.SlowDown = RetrySame, wait, true
	case floodgate.ProviderLockTimeout:
		// An object lock, not a rate limit: retry soon, at the same pace.
		d.Action, d.Wait = RetrySame, time.Duration(float64(100*time.Millisecond)+rnd*float64(400*time.Millisecond))
	case floodgate.ProviderNetwork:
		d.Action, d.Wait = RetrySame, wait
	case floodgate.ProviderServer:
		// Stripe stores a 5xx under its key: resending returns the same
		// 5xx, so only a lookup can tell. It marks the few 5xx that did not
		// execute with Stripe-Should-Retry: true.
		d.Action = Reconcile
		if pe.ShouldRetry != nil && *pe.ShouldRetry && tries < p.ServerRetries {
			d.Action, d.Wait = RetrySame, wait
		}
	case floodgate.ProviderIdempotency:
		d.Action = Reconcile
		if pe.HTTPStatus == 409 {
			// The first request with this key is still executing.
			d.Action, d.Wait = RetrySame, wait
		}
	case floodgate.ProviderCard:
		d.Action = Final
	case floodgate.ProviderInvalid, floodgate.ProviderNotFound:
		d.Action = Final
		if reconcileCodes[pe.Code] {
			d.Action = Reconcile
		}
	case floodgate.ProviderAuth:
		d.Action, d.Wait = Hold, max(wait, 10*time.Second)
	default:
		d.Action, d.Wait = RetrySame, wait
	}
	if pe.ShouldRetry != nil && !*pe.ShouldRetry && d.Action == RetrySame && pe.Kind != floodgate.ProviderNetwork {
		// The provider says resending this key will not help.
		d.Action, d.Wait = Reconcile, 0
	}
	if d.Action == RetrySame && !sameKeyOK {
		// The provider may have forgotten the key: resending it could
		// charge a second time. Look the payment up instead.
		d.Action, d.Wait = Reconcile, 0
	}
	return d
}
