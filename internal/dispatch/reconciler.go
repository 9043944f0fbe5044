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

// lookupSkew widens a key's window on both sides, against clock skew
// between floodgate and the provider.
const lookupSkew = 2 * time.Minute

// confirmGap separates the two empty lookups that prove no payment exists.
var confirmGap = 3 * time.Second

// lookupTries bounds the failed provider requests of one lookup before
// the gift is left to wait and be looked up again later.
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
// stored 5xx, an idempotency error, a key about to be forgotten): it looks
// the payment up, never guesses. It does its work for the dispatcher's
// workers, on their goroutines, only while it runs; Stop waits for the
// lookups in flight.
type Reconciler struct {
	startstop.Base
	link  *Link
	opts  ReconcilerOptions
	clock floodgate.Clock
	log   *slog.Logger
}

var _ startstop.Service = (*Reconciler)(nil)

// NewReconciler returns a Reconciler looking payments up through link.
func NewReconciler(link *Link, opts ReconcilerOptions) *Reconciler {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	return &Reconciler{link: link, opts: opts, clock: opts.Clock, log: logger(opts.Logger)}
}

// Start lets the reconciler take lookups.
func (r *Reconciler) Start(ctx context.Context) error {
	if _, ok := r.StartInit(ctx); !ok {
		return nil
	}
	return r.StartDone(nil)
}

// resolve finds out what became of an order whose last call may or may
// not have taken effect. It retrieves the recorded PaymentIntent, or lists
// PaymentIntents over the key's lifetime whose metadata names the order
// (its Lookup: metadata.donation_id for a donation, in every request
// format; never Search, which lags), one paced request per page. The step it
// returns is the payment found (stepPayment); a new key (stepNewKey) when
// two lookups a few seconds apart agree that no payment exists; or
// stepDefer when the provider did not answer, or the reconciler does not
// run. stepDone only when ctx ended: the gift keeps its key.
func (r *Reconciler) resolve(ctx context.Context, don *floodgate.PaymentOrder, cause error) step {
	next := step{kind: stepDefer}
	r.Within(ctx, func(ctx context.Context) { next = r.lookupStep(ctx, don, cause) })
	if next.kind == stepDone && ctx.Err() == nil {
		// The reconciler stopped under the dispatcher's feet: the gift
		// must not stay in hand, its lease extended, undecided.
		next = step{kind: stepDefer}
	}
	return next
}

func (r *Reconciler) lookupStep(ctx context.Context, don *floodgate.PaymentOrder, cause error) step {
	r.log.Info("dispatch: outcome unknown; looking the payment up", "order", don.ID, "attempt", don.Attempt, "cause", cause)
	for round := range 2 {
		if round == 1 && !floodgate.Sleep(ctx, r.clock, confirmGap) {
			return step{kind: stepDone}
		}
		p, found, err := r.lookup(ctx, don)
		if err != nil {
			if ctx.Err() != nil {
				return step{kind: stepDone}
			}
			r.log.Warn("dispatch: lookup failed; the gift waits and is looked up again", "order", don.ID, "err", err)
			return step{kind: stepDefer}
		}
		if found {
			r.countReconciled("found")
			return step{kind: stepPayment, payment: p}
		}
	}
	r.countReconciled("none")
	return step{kind: stepNewKey}
}

// lookup finds the payment the donation's current key may have made.
//
// A donation that already had a PaymentIntent (a retry with another
// payment method) is looked up by id: the confirm ran if the PaymentIntent
// moved on, or if its last failure was this payment method's.
//
// Otherwise the PaymentIntents created between the key's first use and
// now are listed, page by page, each page one paced request; a failed page
// is asked again from where it failed.
func (r *Reconciler) lookup(ctx context.Context, don *floodgate.PaymentOrder) (*floodgate.Payment, bool, error) {
	if don.PaymentIntentID != "" {
		var p *floodgate.Payment
		err := r.retry(ctx, func() (err error) {
			p, err = r.link.payment(ctx, don.PaymentIntentID)
			return err
		})
		if err != nil {
			return nil, false, err
		}
		switch {
		case p.Status == floodgate.PaymentRequiresConfirmation:
			return nil, false, nil
		case p.Status == floodgate.PaymentRequiresPaymentMethod && p.FailedPaymentMethod != don.PaymentMethod:
			return nil, false, nil // our confirm never ran
		}
		return p, true, nil
	}
	since := don.CreatedAt
	if don.KeySince != nil {
		since = *don.KeySince
	}
	q := floodgate.PaymentQuery{CreatedFrom: since.Add(-lookupSkew), CreatedTo: r.clock.Now().Add(lookupSkew), Metadata: don.Lookup()}
	var best *floodgate.Payment
	for {
		var page floodgate.PaymentPage
		err := r.retry(ctx, func() (err error) {
			page, err = r.link.findPayments(ctx, q)
			return err
		})
		if err != nil {
			return nil, false, err
		}
		for _, p := range page.Payments {
			if !don.Owns(p) {
				r.log.Error("dispatch: incident: lookup returned a payment of another order", "order", don.ID, "payment_intent", p.ID, "metadata", p.Metadata)
				continue
			}
			if best != nil {
				r.log.Error("dispatch: incident: more than one payment for one order", "order", don.ID, "payment_intents", []string{best.ID, p.ID})
			}
			if best == nil || p.Status == floodgate.PaymentSucceeded {
				best = p
			}
		}
		if !page.More || page.Last == "" {
			return best, best != nil, nil
		}
		q.After = page.Last
	}
}

// retry runs f until it succeeds, at most lookupTries times, backing off
// between tries and slowing down on 429s.
func (r *Reconciler) retry(ctx context.Context, f func() error) error {
	var err error
	for try := 0; try < lookupTries; try++ {
		if err = f(); err == nil || ctx.Err() != nil {
			return err
		}
		dec := r.opts.Policy.Decide(err, try, 0, rand.Float64())
		if dec.SlowDown {
			r.link.slowDown(false)
		}
		if !floodgate.Sleep(ctx, r.clock, max(dec.Wait, r.opts.Policy.Backoff(try+2, rand.Float64()))) {
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
