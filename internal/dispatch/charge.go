package dispatch

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/floodgate/floodgate"
)

// charge is one payment order in a worker's hands, and what its charge
// has spent.
type charge struct {
	don *floodgate.PaymentOrder
	// tries counts the sends of the current key that failed.
	tries int
	// generations counts the new keys lookups led to in this charge.
	generations int
	// lookup is the class of the failure whose outcome a lookup is
	// establishing ("" when none is under way), and cause the failure: a
	// new key it leads to counts as a generation.
	lookup string
	cause  error
}

// charge drives one order from step to step until it is settled, put off,
// or the dispatcher stops (then it keeps its key and resumes later).
func (d *Dispatcher) charge(ctx context.Context, don *floodgate.PaymentOrder) {
	if d.screen != nil && d.neverSent(don) && d.screen.Refuse(ctx, don) {
		return
	}
	c := &charge{don: don}
	for s := (step{kind: stepCharge}); s.kind != stepDone; {
		s = d.next(ctx, c, s)
	}
}

// neverSent reports whether a gift in hand surely never reached the
// provider under its current key: it was just claimed from the line, not
// resumed after a dispatcher died or put it off (those may have been
// charged, and only the provider can say). A claim from the line stamps
// the key's first use with the claim's time, which is where the lease
// starts; a resumed gift keeps the time its key was first used, earlier
// than any lease it is claimed under again.
func (d *Dispatcher) neverSent(don *floodgate.PaymentOrder) bool {
	return don.PaymentIntentID == "" && don.KeySince != nil && don.LeaseUntil != nil &&
		don.LeaseUntil.Sub(*don.KeySince) == d.opts.Lease
}

// next does step s of charge c and returns the step after it.
func (d *Dispatcher) next(ctx context.Context, c *charge, s step) step {
	now := d.opts.Clock.Now
	switch s.kind {
	case stepCharge:
		if !floodgate.Sleep(ctx, d.opts.Clock, s.wait) {
			return step{kind: stepDone}
		}
		return d.send(ctx, c)
	case stepLookup:
		c.lookup, c.cause = s.class, s.cause
		return d.rec.resolve(ctx, c.don, s.cause, s.class)
	case stepPayment:
		return afterPayment(c.don, s.payment, s.polls, now())
	case stepPoll:
		return d.poll(ctx, c, s)
	case stepNewKey:
		return d.newKey(ctx, c, s.pi)
	case stepSettle:
		// A worker's settlement is made under its claim: it applies only
		// while the claim holds the order.
		st := s.settle
		st.Token = c.don.Token
		if got := d.settler.settle(ctx, st); secondPayment(st, got) {
			_ = refundSecond(ctx, d.link, d.opts.Policy, d.opts.Clock, d.log, d.opts.Metrics, got, st.PaymentIntentID)
		}
	case stepDefer:
		d.deferDonation(ctx, c.don, s.wait)
	case stepStray:
		d.log.Error("dispatch: incident: a PaymentIntent in a status floodgate never asks for", "order", c.don.ID,
			"payment_intent", s.payment.ID, "status", s.payment.Status)
		d.deferDonation(ctx, c.don, 10*d.opts.DeferWait)
	}
	return step{kind: stepDone}
}

// send sends the charge under the gift's current key once. The key may be
// sent only while the provider surely keeps it, judged when the request
// leaves, after every wait.
func (d *Dispatcher) send(ctx context.Context, c *charge) step {
	if ctx.Err() != nil {
		return step{kind: stepDone}
	}
	don := c.don
	if don.KeySince == nil {
		now := d.opts.Clock.Now()
		don.KeySince = &now
	}
	req := don.ChargeRequest()
	p, err := d.link.charge(ctx, req, don.KeySince.Add(d.opts.Policy.KeyRetention))
	if err == nil {
		return step{kind: stepPayment, payment: p}
	}
	dec := d.opts.Policy.Decide(err, c.tries, d.opts.Clock.Now().Sub(*don.KeySince), rand.Float64())
	if d.opts.Metrics != nil && dec.Action != Final && dec.Action != Abandon {
		d.opts.Metrics.Retries.WithLabelValues(dec.Class).Inc()
	}
	next := afterFailure(don, err, dec, d.opts.Clock.Now())
	switch dec.Action {
	case Final:
		var pe *floodgate.ProviderError
		if errors.As(err, &pe) && pe.Kind == floodgate.ProviderCard && pe.Payment != nil && d.screen != nil {
			d.screen.Declined(ctx, pe.Payment.Fingerprint, pe.Code, pe.DeclineCode)
		}
		if errors.As(err, &pe) && pe.Kind != floodgate.ProviderCard {
			d.log.Error("dispatch: provider refused a charge request", "order", don.ID, "err", err)
		}
	case Hold:
		d.log.Error("dispatch: the provider refuses our credentials; charging is held", "order", don.ID, "err", err)
	case RetrySame:
		d.log.Debug("dispatch: retrying with the same key", "order", don.ID, "class", dec.Class, "wait", dec.Wait, "err", err)
	}
	if next.kind == stepCharge {
		if dec.SlowDown {
			d.link.slowDown(true)
		}
		c.tries++
	}
	return next
}

// poll retrieves a PaymentIntent the provider is still processing, after
// the step's wait; a failed retrieve counts as a poll and the last answer
// stands.
func (d *Dispatcher) poll(ctx context.Context, c *charge, s step) step {
	if !floodgate.Sleep(ctx, d.opts.Clock, s.wait) {
		return step{kind: stepDone}
	}
	p, err := d.link.payment(ctx, s.payment.ID)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("dispatch: retrieving a processing payment failed", "order", c.don.ID, "err", err)
		}
		p = s.payment
	}
	return step{kind: stepPayment, payment: p, polls: s.polls + 1}
}

// newKey moves the gift to a new key generation, to confirm pi or (pi "")
// to charge afresh after a lookup found no payment, and charges it next.
// A failed write puts the gift off: the claim is given up rather than
// held undecided.
func (d *Dispatcher) newKey(ctx context.Context, c *charge, pi string) step {
	don := c.don
	nd, err := d.store.NewKeyGeneration(ctx, don.Claim(), don.Attempt, pi, d.opts.Clock.Now())
	if err != nil {
		if pi != "" {
			d.log.Error("dispatch: recording a PaymentIntent to confirm failed", "order", don.ID, "payment_intent", pi, "err", err)
		} else {
			d.log.Error("dispatch: new key generation failed", "order", don.ID, "err", err)
		}
		return step{kind: stepDefer}
	}
	if pi == "" {
		d.log.Info("dispatch: no payment exists; charging with a new key", "order", don.ID, "attempt", nd.Attempt)
	}
	c.don, c.tries = nd, 0
	class := c.lookup
	if class == "" {
		return step{kind: stepCharge}
	}
	c.lookup = ""
	c.generations++
	next := afterLookupKey(d.opts.Policy, nd, c.generations, class, rand.Float64(), d.opts.Clock.Now())
	if next.kind == stepSettle {
		d.log.Error("dispatch: giving up after repeated unknown outcomes with no payment", "order", nd.ID, "err", c.cause)
	}
	return next
}

// deferDonation gives the order's claim up for wait (0: DeferWait). A
// failed store write is retried: this dispatcher keeps extending the
// leases of what it claimed, so a claim it dropped unrecorded would never
// lapse. On shutdown, releasing the claims frees it instead.
func (d *Dispatcher) deferDonation(ctx context.Context, don *floodgate.PaymentOrder, wait time.Duration) {
	if wait <= 0 {
		wait = d.opts.DeferWait
	}
	err := d.settler.persist(ctx, "deferring", don.ID, func() error {
		return d.store.Defer(context.WithoutCancel(ctx), don.Claim(), wait)
	})
	if floodgate.ErrorCode(err) == floodgate.ESTATE {
		// Settled meanwhile (a webhook), or no longer this dispatcher's:
		// nothing to give up.
		d.log.Debug("dispatch: nothing to defer", "order", don.ID, "err", err)
	}
}
