package dispatch

import (
	"context"
	"log/slog"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
)

// refundSecond refunds pi, a succeeded payment for order o that is not the
// one o settled with (a PaymentIntent the provider made later for a key
// generation o had moved on from): an incident, counted and logged, and
// money given back at once. The refund's key is derived from pi, so
// refunding it again (a webhook delivered twice, a sweep and a webhook)
// makes no second refund.
func refundSecond(ctx context.Context, link *Link, p Policy, clock floodgate.Clock, log *slog.Logger, m *metrics.Metrics, o *floodgate.PaymentOrder, pi string) error {
	incident(log, m, "second_success", "a second succeeded payment for one order; refunding it", "order", o.ID,
		"payment_intent", pi, "settled_with", o.PaymentIntentID)
	var id string
	err := retryLookup(ctx, link, p, clock, func() (err error) {
		id, err = link.refund(ctx, pi)
		return err
	})
	if err != nil {
		log.Error("dispatch: refunding a second payment failed; refund it by hand if this persists", "order", o.ID, "payment_intent", pi, "err", err)
		return err
	}
	log.Warn("dispatch: second payment refunded", "order", o.ID, "payment_intent", pi, "refund", id)
	return nil
}

// secondPayment reports whether st, a settlement the store refused with
// the order left as got, was a success with a PaymentIntent other than
// the one the order had already succeeded with: a second payment.
func secondPayment(st floodgate.Settlement, got *floodgate.PaymentOrder) bool {
	return got != nil && st.Status == floodgate.StatusSucceeded && got.Status == floodgate.StatusSucceeded &&
		st.PaymentIntentID != "" && got.PaymentIntentID != "" && got.PaymentIntentID != st.PaymentIntentID
}
