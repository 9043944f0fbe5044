package dispatch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// lookupSkew widens a key's window on both sides while the provider's
// clock is not known yet (no answer has carried its Date).
const lookupSkew = 2 * time.Minute

// lookupTries bounds the failed provider requests of one lookup (a
// retrieve, a sweep's page) before it is left to be tried again later.
const lookupTries = 5

// ReconcilerOptions configure a Reconciler.
type ReconcilerOptions struct {
	Policy Policy
	Clock  floodgate.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// Reconciler owns the outcomes that may or may not have happened (a
// stored 5xx, an idempotency error, a key about to be forgotten): it never
// guesses. An order with a recorded PaymentIntent (a retry with another
// payment method) is looked up by that id; any other is handed to the
// sweeps (Sweeper) with the window its PaymentIntent can have been created
// in, and leaves the worker's hands. It does its work for the dispatcher's
// workers, on their goroutines, only while it runs; Stop waits for the
// lookups in flight.
type Reconciler struct {
	startstop.Base
	store floodgate.Sweeps
	link  *Link
	opts  ReconcilerOptions
	clock floodgate.Clock
	log   *slog.Logger
}

var _ startstop.Service = (*Reconciler)(nil)

// NewReconciler returns a Reconciler looking payments up through link and
// handing unknown outcomes to the sweeps through store.
func NewReconciler(store floodgate.Sweeps, link *Link, opts ReconcilerOptions) *Reconciler {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	return &Reconciler{store: store, link: link, opts: opts, clock: opts.Clock, log: logger(opts.Logger)}
}

// Start lets the reconciler take lookups.
func (r *Reconciler) Start(ctx context.Context) error {
	if _, ok := r.StartInit(ctx); !ok {
		return nil
	}
	return r.StartDone(nil)
}

// resolve finds out what became of an order whose last call may or may
// not have taken effect. An order with a recorded PaymentIntent is
// retrieved: the step it returns is the payment (stepPayment), or a new
// key to confirm it (stepNewKey) when no confirm of ours ran on it. Any
// other is handed to the sweeps (stepDone: it leaves the worker's hands;
// a sweep or a webhook settles it or gives it a new key). stepDefer when
// the provider or the store did not answer, or the reconciler does not
// run. stepDone also when ctx ended: the order keeps its key. class is
// the failure's (Decision.Class).
func (r *Reconciler) resolve(ctx context.Context, don *floodgate.PaymentOrder, cause error, class string) step {
	next := step{kind: stepDefer}
	r.Within(ctx, func(ctx context.Context) {
		if don.PaymentIntentID != "" {
			next = r.retrieveStep(ctx, don, cause)
			return
		}
		next = r.handOver(ctx, don, cause, class)
	})
	if next.kind == stepDone && ctx.Err() == nil && !next.handedOver {
		// The reconciler stopped under the dispatcher's feet: the gift
		// must not stay in hand, its lease extended, undecided.
		next = step{kind: stepDefer}
	}
	return next
}

// handOver records that don's outcome is unknown, with the window in the
// provider's clock where its current key's PaymentIntent, if any, was
// created: from the key's first use to now, after its last answer.
func (r *Reconciler) handOver(ctx context.Context, don *floodgate.PaymentOrder, cause error, class string) step {
	if !r.link.providerClock().Known {
		// No answer has dated the provider's clock yet (every one was
		// lost): one request that lists nothing does, or the window must
		// be widened by lookupSkew each side.
		r.link.probeClock(ctx)
	}
	now := r.clock.Now()
	since := don.CreatedAt
	if don.KeySince != nil {
		since = *don.KeySince
	}
	w := r.link.providerClock().Window(since, now, windowMargin, lookupSkew)
	_, err := r.store.MarkUnknown(ctx, don.Claim(), w, class, now)
	switch {
	case err == nil:
		r.log.Info("dispatch: outcome unknown; the sweeps look for its payment", "order", don.ID, "attempt", don.Attempt,
			"window", w, "cause", cause)
		return step{kind: stepDone, handedOver: true}
	case floodgate.ErrorCode(err) == floodgate.ESTATE:
		// No longer this claim's: settled meanwhile, or taken over.
		r.log.Debug("dispatch: unknown outcome not handed over", "order", don.ID, "err", err)
		return step{kind: stepDone, handedOver: true}
	}
	if ctx.Err() != nil {
		return step{kind: stepDone}
	}
	r.log.Warn("dispatch: handing an unknown outcome to the sweeps failed; the gift waits", "order", don.ID, "err", err)
	return step{kind: stepDefer}
}

// retrieveStep looks up the PaymentIntent recorded for don: our confirm
// ran if the PaymentIntent moved on, or if its last failure was this
// payment method's.
func (r *Reconciler) retrieveStep(ctx context.Context, don *floodgate.PaymentOrder, cause error) step {
	r.log.Info("dispatch: outcome unknown; retrieving the payment", "order", don.ID, "payment_intent", don.PaymentIntentID,
		"attempt", don.Attempt, "cause", cause)
	var p *floodgate.Payment
	err := r.retry(ctx, func() (err error) {
		if m := r.opts.Metrics; m != nil {
			m.Lookups.WithLabelValues("retrieve").Inc()
		}
		p, err = r.link.payment(ctx, don.PaymentIntentID)
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return step{kind: stepDone}
		}
		r.log.Warn("dispatch: lookup failed; the gift waits and is looked up again", "order", don.ID, "err", err)
		return step{kind: stepDefer}
	}
	switch {
	case p.Status == floodgate.PaymentRequiresConfirmation,
		p.Status == floodgate.PaymentRequiresPaymentMethod && p.FailedPaymentMethod != don.PaymentMethod:
		// Our confirm never ran.
		r.countReconciled("none")
		return step{kind: stepNewKey, pi: p.ID}
	}
	r.countReconciled("found")
	return step{kind: stepPayment, payment: p}
}

// retry runs f until it succeeds, at most lookupTries times, backing off
// between tries and slowing down on 429s.
func (r *Reconciler) retry(ctx context.Context, f func() error) error {
	return retryLookup(ctx, r.link, r.opts.Policy, r.clock, f)
}

// retryLookup runs a lookup's request f until it succeeds, at most
// lookupTries times, backing off between tries and slowing link down on
// 429s; a refusal the policy calls final is returned at once.
func retryLookup(ctx context.Context, link *Link, p Policy, clock floodgate.Clock, f func() error) error {
	var err error
	for try := 0; try < lookupTries; try++ {
		if err = f(); err == nil || ctx.Err() != nil {
			return err
		}
		dec := p.Decide(err, try, 0, rand.Float64())
		if dec.Action == Final || dec.Action == Hold {
			return err // refused for good: asking again changes nothing
		}
		if dec.SlowDown {
			link.slowDown(false)
		}
		if !floodgate.Sleep(ctx, clock, max(dec.Wait, p.Backoff(try+2, rand.Float64()))) {
			return ctx.Err()
		}
	}
	return err
}

func (r *Reconciler) countReconciled(outcome string) {
	if r.opts.Metrics != nil {
		r.opts.Metrics.Retries.WithLabelValues("reconciled_" + outcome).Inc()
	}
}
