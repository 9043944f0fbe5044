package dispatch

import (
	"context"
	"time"

	"github.com/floodgate/floodgate"
)

// Apply records what a verified provider event says about a payment order. It
// moves state only forward (the store refuses any other move), so a
// replayed or late event is harmless: a late payment_failed never
// overwrites succeeded. An event for a payment floodgate does not know is
// ignored (applied false, no error); an error means the provider should
// deliver the event again.
func (d *Dispatcher) Apply(ctx context.Context, ev *floodgate.ProviderEvent) (applied bool, err error) {
	don, err := d.eventOrder(ctx, ev)
	if don == nil || err != nil {
		return false, err
	}
	if don.PaymentIntentID != "" && ev.PaymentIntentID != "" && don.PaymentIntentID != ev.PaymentIntentID {
		d.log.Error("dispatch: incident: an event names this order but another PaymentIntent",
			"order", don.ID, "payment_intent", ev.PaymentIntentID, "recorded", don.PaymentIntentID, "event", ev.ID)
		return false, nil
	}
	switch ev.Type {
	case "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "payment_intent.requires_action":
		return d.applyPayment(ctx, don, ev)
	case "charge.refunded":
		return d.applyReversal(ctx, don, ev, floodgate.ReversalRefund)
	case "charge.dispute.created":
		return d.applyReversal(ctx, don, ev, floodgate.ReversalDispute)
	}
	d.log.Info("dispatch: event not acted on", "type", ev.Type, "event", ev.ID, "order", don.ID)
	return false, nil
}

// eventOrder finds the order an event is about: by the order its metadata
// names, or by the donation it names (a payment made before orders had
// kinds names only that), or else by its PaymentIntent (a charge's
// metadata need not carry the PaymentIntent's). None (nil, nil) for a
// payment floodgate does not know.
func (d *Dispatcher) eventOrder(ctx context.Context, ev *floodgate.ProviderEvent) (*floodgate.PaymentOrder, error) {
	var don *floodgate.PaymentOrder
	var err error
	ref := floodgate.RefOf(ev.Metadata)
	switch {
	case floodgate.ValidID(floodgate.OrderIDPrefix, ref.Order):
		don, err = d.store.Order(ctx, ref.Order)
	case ref.Kind == floodgate.KindDonation && floodgate.ValidID(floodgate.DonationIDPrefix, ref.PaysFor):
		don, err = d.store.OrderOf(ctx, floodgate.KindDonation, ref.PaysFor)
	case ev.PaymentIntentID != "":
		don, err = d.store.OrderByPaymentIntent(ctx, ev.PaymentIntentID)
	default:
		return nil, nil
	}
	if floodgate.ErrorCode(err) == floodgate.ENOTFOUND {
		return nil, nil
	}
	return don, err
}

func (d *Dispatcher) applyPayment(ctx context.Context, don *floodgate.PaymentOrder, ev *floodgate.ProviderEvent) (bool, error) {
	if ev.Payment == nil {
		return false, nil
	}
	// A failure or a request for 3-D Secure from an attempt older than the
	// current key (before the donor brought another card) says nothing of
	// this attempt; nor does any while the current key has not been used
	// (the gift waits in line with another card: a dispatcher may claim it
	// between this read and the settlement). Success is always recorded:
	// money that moved counts.
	if ev.Type != "payment_intent.succeeded" && (don.KeySince == nil || ev.Created.Before(don.KeySince.Add(-time.Second))) {
		d.log.Info("dispatch: stale event ignored", "type", ev.Type, "event", ev.ID, "order", don.ID)
		return false, nil
	}
	s, ok := settlementFor(don, ev.Payment, d.opts.Clock.Now())
	if !ok {
		return false, nil
	}
	s.Note = "webhook " + ev.Type
	if s.Status == floodgate.StatusCanceled {
		s.Note = "canceled at the provider (webhook)"
	}
	got, err := d.store.Settle(ctx, s)
	applied, err := d.applied(got, string(s.Status), err)
	if applied && d.opts.Outcome != nil {
		d.opts.Outcome(got)
	}
	return applied, err
}

// applyReversal takes a refund or dispute off raised. The event carries
// the cumulative amount, so a replayed or late one changes nothing.
func (d *Dispatcher) applyReversal(ctx context.Context, don *floodgate.PaymentOrder, ev *floodgate.ProviderEvent, kind floodgate.Reversal) (bool, error) {
	if ev.Amount <= 0 {
		return false, nil
	}
	got, err := d.store.Reverse(ctx, don.ID, kind, ev.Amount, d.opts.Clock.Now())
	return d.applied(got, string(kind), err)
}

// applied turns a store answer into Apply's: ESTATE means the change was
// already there (or further on).
func (d *Dispatcher) applied(got *floodgate.PaymentOrder, what string, err error) (bool, error) {
	switch floodgate.ErrorCode(err) {
	case "":
		if d.opts.Metrics != nil {
			d.opts.Metrics.Settled.WithLabelValues(what).Inc()
		}
		if d.opts.Settled != nil {
			d.opts.Settled(got)
		}
		return true, nil
	case floodgate.ESTATE:
		return false, nil
	}
	return false, err
}
