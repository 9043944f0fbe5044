package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// WebhooksOptions configure a Webhooks.
type WebhooksOptions struct {
	// Link, when set, refunds a second succeeded payment for one order;
	// without it such a payment is only reported as an incident.
	Link   *Link
	Policy Policy
	Clock  floodgate.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// EventStore is what Webhooks uses: the order an event is about and the
// moves the event makes (Line).
type EventStore interface {
	floodgate.Line
}

// Webhooks applies verified provider events to payment orders. It takes
// events only while it runs; Stop waits for those being applied.
type Webhooks struct {
	startstop.Base
	store   EventStore
	settler *Settler
	opts    WebhooksOptions
	clock   floodgate.Clock
	log     *slog.Logger
}

var _ startstop.Service = (*Webhooks)(nil)

// errNotApplying answers an event that came while the applier does not
// run: the provider delivers it again.
var errNotApplying = &floodgate.Error{Code: floodgate.EUNAVAILABLE, Message: "Provider events are not applied right now; deliver it again.",
	RetryAfter: time.Second}

// NewWebhooks returns a Webhooks recording through settler.
func NewWebhooks(store EventStore, settler *Settler, opts WebhooksOptions) *Webhooks {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	return &Webhooks{store: store, settler: settler, opts: opts, clock: opts.Clock, log: logger(opts.Logger)}
}

// Start lets events be applied.
func (w *Webhooks) Start(ctx context.Context) error {
	if _, ok := w.StartInit(ctx); !ok {
		return nil
	}
	return w.StartDone(nil)
}

// Apply records what a verified provider event says about an order. It
// moves state only forward (the store refuses any other move), so a
// replayed or late event is harmless: a late payment_failed never
// overwrites succeeded. An event for a payment floodgate does not know is
// ignored (applied false, no error); an error means the provider should
// deliver the event again.
func (w *Webhooks) Apply(ctx context.Context, ev *floodgate.ProviderEvent) (applied bool, err error) {
	if !w.Within(ctx, func(ctx context.Context) { applied, err = w.apply(ctx, ev) }) {
		return false, errNotApplying
	}
	return applied, err
}

func (w *Webhooks) apply(ctx context.Context, ev *floodgate.ProviderEvent) (applied bool, err error) {
	don, err := w.eventOrder(ctx, ev)
	if don == nil || err != nil {
		return false, err
	}
	if don.PaymentIntentID != "" && ev.PaymentIntentID != "" && don.PaymentIntentID != ev.PaymentIntentID {
		return w.another(ctx, don, ev)
	}
	switch ev.Type {
	case "payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.canceled", "payment_intent.requires_action":
		return w.applyPayment(ctx, don, ev)
	case "charge.refunded":
		return w.applyReversal(ctx, don, ev, floodgate.ReversalRefund)
	case "charge.dispute.created":
		return w.applyReversal(ctx, don, ev, floodgate.ReversalDispute)
	}
	w.log.Info("dispatch: event not acted on", "type", ev.Type, "event", ev.ID, "order", don.ID)
	return false, nil
}

// eventOrder finds the order an event is about: by the order its metadata
// names, or by the donation it names (a payment made before orders had
// kinds names only that), or else by its PaymentIntent (a charge's
// metadata need not carry the PaymentIntent's). None (nil, nil) for a
// payment floodgate does not know.
func (w *Webhooks) eventOrder(ctx context.Context, ev *floodgate.ProviderEvent) (*floodgate.PaymentOrder, error) {
	var don *floodgate.PaymentOrder
	var err error
	ref := floodgate.RefOf(ev.Metadata)
	switch {
	case floodgate.ValidID(floodgate.OrderIDPrefix, ref.Order):
		don, err = w.store.Order(ctx, ref.Order)
	case ref.Kind == floodgate.KindDonation && floodgate.ValidID(floodgate.DonationIDPrefix, ref.PaysFor):
		don, err = w.store.OrderOf(ctx, floodgate.KindDonation, ref.PaysFor)
	case ev.PaymentIntentID != "":
		don, err = w.store.OrderByPaymentIntent(ctx, ev.PaymentIntentID)
	default:
		return nil, nil
	}
	if floodgate.ErrorCode(err) == floodgate.ENOTFOUND {
		return nil, nil
	}
	return don, err
}

func (w *Webhooks) applyPayment(ctx context.Context, don *floodgate.PaymentOrder, ev *floodgate.ProviderEvent) (bool, error) {
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
		w.log.Info("dispatch: stale event ignored", "type", ev.Type, "event", ev.ID, "order", don.ID)
		return false, nil
	}
	s, ok := settlementFor(don, ev.Payment, w.clock.Now())
	if !ok {
		return false, nil
	}
	s.Note = "webhook " + ev.Type
	if s.Status == floodgate.StatusCanceled {
		s.Note = "canceled at the provider (webhook)"
	}
	got, err := w.store.Settle(ctx, s)
	return w.applied(got, string(s.Status), true, err)
}

// another handles an event about a PaymentIntent that names don but is
// not the one don recorded: an incident, never applied to don. A second
// succeeded one is money moved twice for one order (a PaymentIntent the
// provider made for a key generation the order had moved on from): it is
// refunded (a failure the provider may get over makes it deliver the
// event again, so the refund is tried again; one it refuses for good, such
// as a PaymentIntent it does not know, is logged and not retried). A
// refund or dispute of it leaves don's own payment untouched.
func (w *Webhooks) another(ctx context.Context, don *floodgate.PaymentOrder, ev *floodgate.ProviderEvent) (bool, error) {
	if ev.Type == "payment_intent.succeeded" && w.opts.Link != nil {
		err := refundSecond(ctx, w.opts.Link, w.opts.Policy, w.clock, w.log, w.opts.Metrics, don, ev.PaymentIntentID)
		var pe *floodgate.ProviderError
		if errors.As(err, &pe) && (pe.Kind == floodgate.ProviderInvalid || pe.Kind == floodgate.ProviderCard) {
			err = nil
		}
		return false, err
	}
	kind := "second_payment"
	if ev.Type == "payment_intent.succeeded" {
		kind = "second_success"
	}
	incident(w.log, w.opts.Metrics, kind, "an event names this order but another PaymentIntent",
		"order", don.ID, "payment_intent", ev.PaymentIntentID, "recorded", don.PaymentIntentID, "event", ev.ID, "type", ev.Type)
	return false, nil
}

// applyReversal takes a refund or dispute off raised. The event carries
// the cumulative amount, so a replayed or late one changes nothing.
func (w *Webhooks) applyReversal(ctx context.Context, don *floodgate.PaymentOrder, ev *floodgate.ProviderEvent, kind floodgate.Reversal) (bool, error) {
	if ev.Amount <= 0 {
		return false, nil
	}
	got, err := w.store.Reverse(ctx, don.ID, kind, ev.Amount, w.clock.Now())
	return w.applied(got, string(kind), false, err)
}

// applied turns a store answer into Apply's: ESTATE means the change was
// already there (or further on). A change taken is recorded (charge: a
// charge's outcome, which the card-testing defence learns).
func (w *Webhooks) applied(got *floodgate.PaymentOrder, what string, charge bool, err error) (bool, error) {
	switch floodgate.ErrorCode(err) {
	case "":
		w.settler.recorded(got, what, charge)
		return true, nil
	case floodgate.ESTATE:
		return false, nil
	}
	return false, err
}
