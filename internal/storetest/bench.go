package storetest

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

// BenchStateChanges measures the changes of a donation's payment order,
// each one transaction that locks the order, asks the domain and writes
// what it decided (the commit's fsync included):
//
//   - decline-retry: a claimed gift is declined (Settle), takes another
//     payment method (ReplacePaymentMethod) and is claimed again: two state
//     changes and a claim per op;
//   - new-key: NewKeyGeneration, one per op;
//   - refund: Reverse with a cumulative total one unit higher, one per op.
func BenchStateChanges(b *testing.B, open Opener) {
	// Claims are made with a lease the clock never outruns, however many
	// operations run: every write under a claim must still hold it.
	claim := func(f *fixture) *floodgate.PaymentOrder {
		os, err := f.store.ClaimOrders(f.ctx, "d", 1, ReportLease)
		if err != nil || len(os) != 1 {
			b.Fatalf("claimed %d, %v; want the one gift", len(os), err)
		}
		return os[0]
	}
	setup := func(b *testing.B) (*fixture, *floodgate.PaymentOrder) {
		b.Helper()
		f := newFixture(b, open)
		f.campaign("c")
		f.acceptNew("c", 99_999_999)
		return f, claim(f)
	}
	b.Run("decline-retry", func(b *testing.B) {
		f, o := setup(b)
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			if _, err := f.store.Settle(f.ctx, floodgate.Settlement{OrderID: o.ID, Token: o.Token, Status: floodgate.StatusFailed,
				FailureCode: "card_declined", At: f.clock.Now()}); err != nil {
				b.Fatal(err)
			}
			if _, err := f.store.ReplacePaymentMethod(f.ctx, o.PaysFor, "pm_card_visa", f.clock.Now()); err != nil {
				b.Fatal(err)
			}
			o = claim(f)
		}
	})
	b.Run("new-key", func(b *testing.B) {
		f, o := setup(b)
		from := 0
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			if _, err := f.store.NewKeyGeneration(f.ctx, o.Claim(), from, "", f.clock.Now()); err != nil {
				b.Fatal(err)
			}
			from++
		}
	})
	b.Run("refund", func(b *testing.B) {
		f, o := setup(b)
		f.settle(floodgate.Settlement{OrderID: o.ID, Token: o.Token, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_bench"})
		var total int64
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			total++
			if _, err := f.store.Reverse(f.ctx, o.ID, floodgate.ReversalRefund, total, f.clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
