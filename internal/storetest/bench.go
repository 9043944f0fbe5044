package storetest

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

// BenchStateChanges measures the state changes of a donation, each one
// transaction that locks the donation, asks the domain and writes what it
// decided (the commit's fsync included):
//
//   - decline-retry: a claimed gift is declined (Settle), takes another
//     payment method (ReplacePaymentMethod) and is claimed again: two state
//     changes and a claim per op;
//   - new-key: NewKeyGeneration, one per op;
//   - refund: Reverse with a cumulative total one unit higher, one per op.
func BenchStateChanges(b *testing.B, open Opener) {
	setup := func(b *testing.B) (*fixture, *floodgate.Donation) {
		b.Helper()
		f := newFixture(b, open)
		f.campaign("c")
		d := f.acceptNew("c", 99_999_999)[0]
		f.claim("d", 1)
		return f, d
	}
	b.Run("decline-retry", func(b *testing.B) {
		f, d := setup(b)
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			if _, err := f.store.Settle(f.ctx, floodgate.Settlement{DonationID: d.ID, Status: floodgate.StatusFailed,
				FailureCode: "card_declined", At: f.clock.Now()}); err != nil {
				b.Fatal(err)
			}
			if _, err := f.store.ReplacePaymentMethod(f.ctx, d.ID, "pm_card_visa", f.clock.Now()); err != nil {
				b.Fatal(err)
			}
			if got := f.claim("d", 1); len(got) != 1 {
				b.Fatalf("claimed %d, want the one gift", len(got))
			}
		}
	})
	b.Run("new-key", func(b *testing.B) {
		f, d := setup(b)
		from := 0
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			if _, err := f.store.NewKeyGeneration(f.ctx, "d", d.ID, from, "", f.clock.Now()); err != nil {
				b.Fatal(err)
			}
			from++
		}
	})
	b.Run("refund", func(b *testing.B) {
		f, d := setup(b)
		f.settle(floodgate.Settlement{DonationID: d.ID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_bench"})
		var total int64
		for b.Loop() {
			f.clock.Advance(time.Millisecond)
			total++
			if _, err := f.store.Reverse(f.ctx, d.ID, floodgate.ReversalRefund, total, f.clock.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
