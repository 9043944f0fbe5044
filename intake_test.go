package floodgate

import (
	"reflect"
	"testing"
)

func TestDonationIntake(t *testing.T) {
	d := &Donation{ID: "don_1", CampaignID: "c", IdempotencyKey: "k", RequestHash: []byte("h")}
	var it Intake = d
	if it.Kind() != KindDonation || it.IntakeKey() != (IntakeKey{Scope: "c", Key: "k"}) || it.IntakeID() != "don_1" {
		t.Fatalf("kind %q key %+v id %q", it.Kind(), it.IntakeKey(), it.IntakeID())
	}
	c := it.clone().(*Donation)
	if c == d || !reflect.DeepEqual(c, d) {
		t.Fatalf("clone = %p %+v of %p %+v", c, c, d, d)
	}
}

// TestBatchParts: a kind's part holds its items with their places, its
// answers land in those places, and an item no part answered is refused
// alone.
func TestBatchParts(t *testing.T) {
	a, b, c := &Donation{IdempotencyKey: "a"}, &Donation{IdempotencyKey: "b"}, &Donation{IdempotencyKey: "c"}
	items := []Intake{a, b, c}
	p := PartOf[*Donation](items)
	if !reflect.DeepEqual(p.Items, []*Donation{a, b, c}) || !reflect.DeepEqual(p.At, []int{0, 1, 2}) {
		t.Fatalf("part = %+v", p)
	}

	// A part of the first and last only, as an engine that stored them.
	part := Part[*Donation]{Items: []*Donation{a, c}, At: []int{0, 2}}
	results := make([]AcceptResult, len(items))
	part.Answer(results, []AcceptResult{{Intake: a}, {Err: Errorf(EIDEMMISMATCH, "no")}})
	RefuseUnanswered(items, results)
	if results[0].Donation() != a || ErrorCode(results[2].Err) != EIDEMMISMATCH {
		t.Fatalf("answers in their places: %+v", results)
	}
	if results[1].Intake != nil || ErrorCode(results[1].Err) != EINTERNAL ||
		results[1].Err.Error() != "internal: This store does not keep a donation." {
		t.Fatalf("unanswered item = %+v, want %s alone", results[1], EINTERNAL)
	}
}
