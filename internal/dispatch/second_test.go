package dispatch

import (
	"testing"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sandbox"
)

// TestSecondPaymentRefunded: a second succeeded PaymentIntent for an order
// already settled with another (the provider's own recovery of a 5xx can
// make one after floodgate moved on to a new key) is refunded in full when
// its webhook arrives, once however often the event comes, and its refund
// leaves the gift and the campaign's totals as they were.
func TestSecondPaymentRefunded(t *testing.T) {
	r := newRig(t, sandbox.Options{}, nil)
	ids := r.accept(1, "pm_card_visa")
	r.wait(ids, floodgate.StatusSucceeded)
	o, err := r.store.OrderOf(r.ctx, floodgate.KindDonation, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	totals := func() floodgate.Totals {
		tot, err := r.store.Totals(r.ctx, "c")
		if err != nil {
			t.Fatal(err)
		}
		return *tot
	}
	before := totals()

	// The late PaymentIntent: the same order's request under a key
	// floodgate no longer uses.
	req := o.ChargeRequest()
	req.IdempotencyKey, req.PaymentIntentID = req.IdempotencyKey+"-late", ""
	late, err := r.link.provider.Charge(r.ctx, req)
	if err != nil || late.Status != floodgate.PaymentSucceeded || late.ID == o.PaymentIntentID {
		t.Fatalf("the late payment: %+v, %v", late, err)
	}
	ev := &floodgate.ProviderEvent{ID: "evt_late", Type: "payment_intent.succeeded", Created: late.Created,
		PaymentIntentID: late.ID, Payment: late, Metadata: late.Metadata}
	for range 2 {
		if applied, err := r.webhooks.Apply(r.ctx, ev); applied || err != nil {
			t.Fatalf("Apply(second success) = %v, %v; want not applied, no error", applied, err)
		}
	}
	refunded := map[string]int64{}
	for _, e := range r.sb.Ledger().PaymentIntents {
		refunded[e.ID] = e.AmountRefunded
	}
	if refunded[late.ID] != o.Amount || refunded[o.PaymentIntentID] != 0 {
		t.Fatalf("refunded: late %d, the gift's own %d; want %d and 0", refunded[late.ID], refunded[o.PaymentIntentID], o.Amount)
	}

	// The provider reports the refund: it is not the gift's.
	rev := &floodgate.ProviderEvent{ID: "evt_refund", Type: "charge.refunded", PaymentIntentID: late.ID, Amount: o.Amount,
		Currency: o.Currency, Metadata: late.Metadata}
	if applied, err := r.webhooks.Apply(r.ctx, rev); applied || err != nil {
		t.Fatalf("Apply(refund of the second payment) = %v, %v", applied, err)
	}
	after, err := r.store.Order(r.ctx, o.ID)
	if err != nil || after.Status != floodgate.StatusSucceeded || after.PaymentIntentID != o.PaymentIntentID || after.Refunded != 0 {
		t.Fatalf("the gift after: %+v, %v", after, err)
	}
	if got := totals(); got != before {
		t.Fatalf("totals %+v, were %+v", got, before)
	}
}
