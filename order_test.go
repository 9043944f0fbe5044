package floodgate

import (
	"maps"
	"reflect"
	"testing"
)

// TestChargeRequestByFormat: a key generation's request is made from the
// order in the generation's format. One begun before payment orders keeps
// its key, description and metadata to the byte (the provider refuses a
// key retried with other parameters); one begun since names the order's
// kind and id, and is keyed by the order.
func TestChargeRequestByFormat(t *testing.T) {
	o := orderIn(StatusProcessing, func(o *PaymentOrder) { o.Attempt = 2 })
	for _, tt := range []struct {
		format RequestFormat
		want   ChargeRequest
	}{{FormatDonation, ChargeRequest{Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa",
		IdempotencyKey: "floodgate-don_1-2", Description: "Donation don_1 to c",
		Metadata: map[string]string{"campaign": "c", "donation_id": "don_1"}}},
		{FormatOrder, ChargeRequest{Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa",
			IdempotencyKey: "floodgate-po_1-2", Description: "Donation don_1 to c",
			Metadata: map[string]string{"campaign": "c", "donation_id": "don_1", "kind": "donation", "order_id": "po_1"}}},
	} {
		c := snapshot(o)
		c.Format = tt.format
		if got := c.ChargeRequest(); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("format %d: request =\n%+v\nwant\n%+v", tt.format, got, tt.want)
		}
	}
	// A confirm of a recorded PaymentIntent names it.
	c := snapshot(o)
	c.PaymentIntentID = "pi_1"
	if got := c.ChargeRequest(); got.PaymentIntentID != "pi_1" || got.IdempotencyKey != "floodgate-po_1-2" {
		t.Errorf("confirm request = %+v", got)
	}
	if CurrentFormat != FormatOrder {
		t.Errorf("the current format is %d: a new format needs a case above and a golden body", CurrentFormat)
	}
}

// TestPaymentRefs: every payment of a donation's order is found by its
// donation (MetaDonation), whatever the format that made it; what a
// payment pays for is read back from its metadata, before payment orders
// and since.
func TestPaymentRefs(t *testing.T) {
	o := orderIn(StatusProcessing)
	for _, f := range []RequestFormat{FormatDonation, FormatOrder} {
		c := snapshot(o)
		c.Format = f
		md := c.ChargeRequest().Metadata
		if !o.Owns(&Payment{Metadata: md}) || !(PaymentQuery{Metadata: o.Lookup()}).Matches(&Payment{Metadata: md}) {
			t.Errorf("format %d: a payment with metadata %v is not the order's", f, md)
		}
		want := PaymentRef{Kind: KindDonation, PaysFor: "don_1"}
		if f == FormatOrder {
			want.Order = "po_1"
		}
		if got := RefOf(md); got != want {
			t.Errorf("format %d: RefOf(%v) = %+v, want %+v", f, md, got, want)
		}
	}
	other := map[string]string{"campaign": "c", "donation_id": "don_2"}
	if o.Owns(&Payment{Metadata: other}) {
		t.Error("another donation's payment is the order's")
	}
	if !maps.Equal(DonationLookup("don_1"), o.Lookup()) {
		t.Errorf("DonationLookup = %v, the order looks up by %v", DonationLookup("don_1"), o.Lookup())
	}
	if got := RefOf(map[string]string{"campaign": "c"}); got != (PaymentRef{}) {
		t.Errorf("metadata naming nothing: %+v", got)
	}
	entry := map[string]string{"kind": "entry", "order_id": "po_9", "entry_id": "ent_9", "campaign": "r"}
	if got := RefOf(entry); got != (PaymentRef{Kind: "entry", Order: "po_9", PaysFor: "ent_9"}) {
		t.Errorf("another kind: %+v", got)
	}
	if q := (PaymentQuery{}); !q.Matches(&Payment{}) {
		t.Error("a query without metadata keeps nothing")
	}
}

// TestEffectOf: a donation's order counts in its campaign's totals by
// where it stands, so every move's effect is the difference, and an order
// of a kind with no effect changes no totals.
func TestEffectOf(t *testing.T) {
	for _, tt := range []struct {
		from, to DonationStatus
		want     TotalsDelta
	}{
		{StatusAccepted, StatusProcessing, TotalsDelta{Waiting: -1}},
		{StatusAccepted, StatusCanceled, TotalsDelta{Pending: -2500, PendingCount: -1, Waiting: -1}},
		{StatusProcessing, StatusSucceeded, TotalsDelta{Raised: 2500, Donations: 1, Pending: -2500, PendingCount: -1}},
		{StatusRequiresAction, StatusFailed, TotalsDelta{Pending: -2500, PendingCount: -1}},
		{StatusFailed, StatusAccepted, TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1}},
		{StatusCanceled, StatusSucceeded, TotalsDelta{Raised: 2500, Donations: 1}},
	} {
		o, next := orderIn(tt.from), orderIn(tt.to)
		if got := EffectOf(o, next); got != (Effect{Campaign: "c", Totals: tt.want}) {
			t.Errorf("%s -> %s: %+v, want %+v", tt.from, tt.to, got, tt.want)
		}
		// The same as the change a gift's totals have always made.
		if want := Delta(tt.from, tt.to, 2500); want != tt.want {
			t.Errorf("%s -> %s: Delta = %+v", tt.from, tt.to, want)
		}
	}
	o := orderIn(StatusSucceeded)
	refunded := orderIn(StatusSucceeded, func(o *PaymentOrder) { o.Refunded = 1000 })
	if got := EffectOf(o, refunded); got.Totals != (TotalsDelta{Raised: -1000}) {
		t.Errorf("refund: %+v", got)
	}
	entry := orderIn(StatusProcessing, func(o *PaymentOrder) { o.Kind = "entry" })
	if got := EffectOf(entry, orderIn(StatusSucceeded)); !got.Zero() {
		t.Errorf("a kind without an effect: %+v", got)
	}
}

// TestOrderIDs: an order's id and the id of what it pays for are each
// found from the other.
func TestOrderIDs(t *testing.T) {
	don := NewID(DonationIDPrefix)
	id := OrderIDOf(don)
	if !ValidID(OrderIDPrefix, id) || id[len(OrderIDPrefix):] != don[len(DonationIDPrefix):] {
		t.Fatalf("OrderIDOf(%s) = %s", don, id)
	}
	if got := PaysForOf(KindDonation, id); got != don {
		t.Fatalf("PaysForOf(%s) = %s, want %s", id, got, don)
	}
	ent := NewID(EntryIDPrefix)
	if got := PaysForOf("ent", OrderIDOf(ent)); got != ent {
		t.Fatalf("another kind: PaysForOf = %s, want %s", got, ent)
	}
	d := &Donation{ID: don, Seq: 4, Amount: 2500, PaymentMethod: "pm_card_visa", ClientAddr: "192.0.2.1"}
	if o := NewOrder(d, t0); o.ID != id || o.PaysFor != don || o.Seq != 4 ||
		o.Status != StatusAccepted || o.Format != CurrentFormat || o.Kind != KindDonation {
		t.Fatalf("NewOrder = %+v", o)
	}
	d.Accepted(t0)
	if d.OrderID != id || d.Status != StatusAccepted || !d.CreatedAt.Equal(t0) || !d.UpdatedAt.Equal(t0) || d.Attempt != 0 ||
		d.KeySince != nil || d.PaymentMethod != "pm_card_visa" || d.ClientAddr != "192.0.2.1" {
		t.Fatalf("Accepted = %+v", d)
	}
}
