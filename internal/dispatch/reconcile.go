package dispatch

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/floodgate/floodgate"
)

// lookupSkew widens a key's window on both sides, against clock skew
// between floodgate and the provider.
const lookupSkew = 2 * time.Minute

// confirmGap separates the two empty lookups that prove no payment exists.
var confirmGap = 3 * time.Second

// lookupTries bounds the failed provider requests of one lookup before
// the gift is left to wait and be looked up again later.
const lookupTries = 5

// reconcile settles an order whose last call may or may not have taken
// effect. It retrieves the recorded PaymentIntent, or lists PaymentIntents
// over the key's lifetime whose metadata names the order (its Lookup:
// metadata.donation_id for a donation, in every request format; never
// Search, which lags), one paced request per page. When two lookups a few
// seconds apart agree that no payment exists, it moves the order to a new
// key generation and returns it to be charged again; nil means the order
// was settled, deferred or abandoned.
func (d *Dispatcher) reconcile(ctx context.Context, don *floodgate.PaymentOrder, cause error) *floodgate.PaymentOrder {
	d.log.Info("dispatch: outcome unknown; looking the payment up", "order", don.ID, "attempt", don.Attempt, "cause", cause)
	for round := 0; round < 2; round++ {
		if round == 1 && !sleep(ctx, confirmGap) {
			return nil
		}
		p, found, err := d.lookup(ctx, don)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("dispatch: lookup failed; the gift waits and is looked up again", "order", don.ID, "err", err)
				d.deferDonation(ctx, don, d.opts.DeferWait)
			}
			return nil
		}
		if found {
			d.countReconciled("found")
			return d.apply(ctx, don, p)
		}
	}
	d.countReconciled("none")
	nd, err := d.store.NewKeyGeneration(ctx, don.Claim(), don.Attempt, "", d.opts.Clock.Now())
	if err != nil {
		d.log.Error("dispatch: new key generation failed", "order", don.ID, "err", err)
		d.deferDonation(ctx, don, d.opts.DeferWait)
		return nil
	}
	d.log.Info("dispatch: no payment exists; charging with a new key", "order", don.ID, "attempt", nd.Attempt)
	return nd
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
func (d *Dispatcher) lookup(ctx context.Context, don *floodgate.PaymentOrder) (*floodgate.Payment, bool, error) {
	if don.PaymentIntentID != "" {
		var p *floodgate.Payment
		err := d.retry(ctx, func() (err error) {
			p, err = d.call(ctx, "retrieve", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
				return d.provider.Payment(ctx, don.PaymentIntentID)
			})
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
	q := floodgate.PaymentQuery{CreatedFrom: since.Add(-lookupSkew), CreatedTo: d.opts.Clock.Now().Add(lookupSkew), Metadata: don.Lookup()}
	var best *floodgate.Payment
	for {
		var page floodgate.PaymentPage
		err := d.retry(ctx, func() (err error) {
			_, err = d.call(ctx, "list", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
				var err error
				page, err = d.provider.FindPayments(ctx, q)
				return nil, err
			})
			return err
		})
		if err != nil {
			return nil, false, err
		}
		for _, p := range page.Payments {
			if !don.Owns(p) {
				d.log.Error("dispatch: incident: lookup returned a payment of another order", "order", don.ID, "payment_intent", p.ID, "metadata", p.Metadata)
				continue
			}
			if best != nil {
				d.log.Error("dispatch: incident: more than one payment for one order", "order", don.ID, "payment_intents", []string{best.ID, p.ID})
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
func (d *Dispatcher) retry(ctx context.Context, f func() error) error {
	var err error
	for try := 0; try < lookupTries; try++ {
		if err = f(); err == nil || ctx.Err() != nil {
			return err
		}
		dec := d.opts.Policy.Decide(err, try, 0, rand.Float64())
		if dec.SlowDown {
			d.global.SlowDown(d.opts.Clock.Now())
			d.publishRate()
		}
		if !sleep(ctx, max(dec.Wait, d.opts.Policy.Backoff(try+2, rand.Float64()))) {
			return ctx.Err()
		}
	}
	return err
}

func (d *Dispatcher) countReconciled(outcome string) {
	if d.opts.Metrics != nil {
		d.opts.Metrics.Retries.WithLabelValues("reconciled_" + outcome).Inc()
	}
}

// deferDonation gives the order's claim up for a while. A failed store
// write is retried: this dispatcher keeps extending the leases of what it
// claimed, so a claim it dropped unrecorded would never lapse. On
// shutdown, releasing the claims frees it instead.
func (d *Dispatcher) deferDonation(ctx context.Context, don *floodgate.PaymentOrder, wait time.Duration) {
	err := d.persist(ctx, "deferring", don.ID, func() error {
		return d.store.Defer(context.WithoutCancel(ctx), don.Claim(), wait)
	})
	if floodgate.ErrorCode(err) == floodgate.ESTATE {
		// Settled meanwhile (a webhook), or no longer this dispatcher's:
		// nothing to give up.
		d.log.Debug("dispatch: nothing to defer", "order", don.ID, "err", err)
	}
}
