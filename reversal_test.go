package floodgate

import "testing"

func TestReverse(t *testing.T) {
	d := &Donation{Status: StatusSucceeded, Amount: 2500}
	tests := []struct {
		name             string
		refunded, disput int64
		kind             Reversal
		total            int64
		wantR, wantD     int64
		raised           int64
	}{
		{"partial refund", 0, 0, ReversalRefund, 1000, 1000, 0, -1000},
		{"refund grows", 1000, 0, ReversalRefund, 2500, 2500, 0, -1500},
		{"replayed refund changes nothing", 2500, 0, ReversalRefund, 2500, 2500, 0, 0},
		{"older report arriving late changes nothing", 2500, 0, ReversalRefund, 1000, 2500, 0, 0},
		{"dispute", 0, 0, ReversalDispute, 2500, 0, 2500, -2500},
		{"dispute after a partial refund takes off only what was left", 1000, 0, ReversalDispute, 2500, 1000, 2500, -1500},
		{"never below what the gift brought", 2500, 2500, ReversalRefund, 2500, 2500, 2500, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.Refunded, d.Disputed = tt.refunded, tt.disput
			r, dd, delta, err := Reverse(d, tt.kind, tt.total)
			if err != nil || r != tt.wantR || dd != tt.wantD || delta.Raised != tt.raised || delta.Donations != 0 || delta.Pending != 0 {
				t.Fatalf("Reverse = %d %d %+v %v; want %d %d raised %d", r, dd, delta, err, tt.wantR, tt.wantD, tt.raised)
			}
		})
	}
	// Before the success: recorded, and raised untouched until then.
	early := &Donation{Status: StatusRequiresAction, Amount: 4000}
	r, _, delta, err := Reverse(early, ReversalRefund, 1000)
	if err != nil || r != 1000 || delta.Raised != 0 {
		t.Fatalf("refund before success = %d %+v %v", r, delta, err)
	}
	early.Refunded = r
	if got := DeltaOf(early, StatusSucceeded); got.Raised != 3000 || got.Donations != 1 || got.Pending != -4000 {
		t.Fatalf("success after the refund: %+v, want raised 3000", got)
	}
}
