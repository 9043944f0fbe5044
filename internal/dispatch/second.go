package dispatch

import (
	"context"
	"log/slog"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
)

// refundSecond refunds p, a succeeded payment for order o that is not the
// one o settled with (a PaymentIntent the provider made later for a key
// generation o had moved on from): an incident, counted and logged, and
// money given back at once. The refund's key is derived from p, so
// refunding it again (a webhook delivered twice, a sweep and a webhook)
// makes no second refund.
func refundSecond(ctx context.Context, link *Link, p Policy, clock floodgate.Clock, log *slog.Logger, m *metrics.Metrics, o *floodgate.PaymentOrder, pay *floodgate.Payment) error {
	incident(log, m, "second_success", "a second succeeded payment for one order; refunding it", "order", o.ID,
		"payment_intent", pay.ID, "settled_with", o.PaymentIntentID)
	var id string
	err := retryLookup(ctx, link, p, clock, func() (err error) {
		id, err = link.refund(ctx, pay.ID)
		return err
	})
	if err != nil {
		log.Error("dispatch: refunding a second payment failed; refund it by hand if this persists", "order", o.ID, "payment_intent", pay.ID, "err", err)
		return err
	}
	log.Warn("dispatch: second payment refunded", "order", o.ID, "payment_intent", pay.ID, "refund", id)
	return nil
}
