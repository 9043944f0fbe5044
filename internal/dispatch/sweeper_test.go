package dispatch

import (
	"log/slog"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func at(t time.Time) *time.Time { return &t }

// TestSweepDue holds the rules a sweep must meet to count for an order:
// its window ended at least a second before the earliest the provider's
// clock can read as the sweep starts, and a second sweep starts at least
// floodgate.SweepGap after the latest the first could have started.
func TestSweepDue(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	unknown := func(to time.Time, sweptAt *time.Time) *floodgate.PaymentOrder {
		return &floodgate.PaymentOrder{ID: "po_1", Status: floodgate.StatusProcessing, UnknownFrom: at(to.Add(-5 * time.Second)),
			UnknownTo: at(to), SweptAt: sweptAt}
	}
	for _, tt := range []struct {
		name  string
		o     *floodgate.PaymentOrder
		start time.Time
		want  bool
	}{
		{"window ended a second before", unknown(t0, nil), t0.Add(time.Second), true},
		{"window ended less than a second before", unknown(t0, nil), t0.Add(999 * time.Millisecond), false},
		{"window not ended", unknown(t0, nil), t0, false},
		{"second sweep floodgate.SweepGap after the first", unknown(t0, at(t0.Add(2*time.Second))), t0.Add(5 * time.Second), true},
		{"second sweep too soon", unknown(t0, at(t0.Add(2*time.Second))), t0.Add(4900 * time.Millisecond), false},
		{"not unknown", &floodgate.PaymentOrder{ID: "po_1"}, t0, false},
	} {
		if got := sweepDue(tt.o, tt.start); got != tt.want {
			t.Errorf("%s: due = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestPick: a succeeded payment says what became of an order whatever
// else was found, then the newest.
func TestPick(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	o := &floodgate.PaymentOrder{ID: "po_1"}
	failed := &floodgate.Payment{ID: "pi_1", Status: floodgate.PaymentRequiresPaymentMethod, Created: t0}
	later := &floodgate.Payment{ID: "pi_2", Status: floodgate.PaymentRequiresPaymentMethod, Created: t0.Add(time.Second)}
	ok := &floodgate.Payment{ID: "pi_3", Status: floodgate.PaymentSucceeded, Created: t0}
	log := slog.New(slog.DiscardHandler)
	for _, tt := range []struct {
		ps   []*floodgate.Payment
		want string
	}{
		{[]*floodgate.Payment{failed}, "pi_1"},
		{[]*floodgate.Payment{failed, later}, "pi_2"},
		{[]*floodgate.Payment{later, failed}, "pi_2"},
		{[]*floodgate.Payment{failed, ok, later}, "pi_3"},
	} {
		if got := pick(o, tt.ps, log, nil); got.ID != tt.want {
			t.Errorf("pick = %s, want %s", got.ID, tt.want)
		}
	}
}

// TestRefOfPayment: a payment is matched to its order in the form the
// order's Lookup names it, in every request format.
func TestRefOfPayment(t *testing.T) {
	don := &floodgate.PaymentOrder{ID: "po_1", Kind: floodgate.KindDonation, PaysFor: "don_1"}
	want := floodgate.RefOf(don.Lookup())
	for _, md := range []map[string]string{
		{floodgate.MetaDonation: "don_1", floodgate.MetaCampaign: "c"},
		{floodgate.MetaDonation: "don_1", floodgate.MetaKind: "donation", floodgate.MetaOrder: "po_1", floodgate.MetaCampaign: "c"},
	} {
		if got := refOfPayment(&floodgate.Payment{Metadata: md}); got != want {
			t.Errorf("%v: ref %+v, want %+v", md, got, want)
		}
	}
	other := &floodgate.PaymentOrder{ID: "po_2", Kind: "entry", PaysFor: "ent_1"}
	md := map[string]string{floodgate.MetaKind: "entry", floodgate.MetaOrder: "po_2", "entry_id": "ent_1"}
	if got, want := refOfPayment(&floodgate.Payment{Metadata: md}), floodgate.RefOf(other.Lookup()); got != want {
		t.Errorf("another kind: ref %+v, want %+v", got, want)
	}
}
