package dispatch

import (
	"slices"
	"testing"

	"github.com/floodgate/floodgate"
)

// TestHeldClaims: a dispatcher renews and releases the claims it holds; a
// worker done with an order it held under a claim since taken over (by
// this same dispatcher, after the lease ran out) leaves the newer claim
// held.
func TestHeldClaims(t *testing.T) {
	h := heldClaims{m: map[string]floodgate.Claim{}}
	a1 := &floodgate.PaymentOrder{ID: "po_a", Seq: 1, Token: 1}
	b := &floodgate.PaymentOrder{ID: "po_b", Seq: 2, Token: 2}
	a3 := &floodgate.PaymentOrder{ID: "po_a", Seq: 1, Token: 3}
	h.add(a1)
	h.add(b)
	h.add(a3) // the lease of a1 ran out, and this dispatcher claimed it again
	h.done(a1)
	got := h.list()
	slices.SortFunc(got, func(x, y floodgate.Claim) int { return int(x.Token - y.Token) })
	if want := []floodgate.Claim{{Order: "po_b", Seq: 2, Token: 2}, {Order: "po_a", Seq: 1, Token: 3}}; !slices.Equal(got, want) {
		t.Fatalf("held = %v, want %v", got, want)
	}
	h.done(a3)
	h.done(b)
	if got := h.list(); len(got) != 0 {
		t.Fatalf("held after all were done = %v", got)
	}
}
