package floodgate

import (
	"bytes"
	"fmt"
	"slices"
	"time"
)

// Transition is what one state change of a donation writes: the donation
// as it will be, the line its history gains and what its campaign's totals
// gain. The Apply functions decide it from the donation as it is; every
// engine locks the donation, asks one of them, and writes exactly the
// Transition in one transaction. The rules live here once, so no engine
// can hold a rule of its own.
type Transition struct {
	// Donation is the donation after the change, every field computed;
	// the fields the change does not write are as they were.
	Donation *Donation
	// Changed lists the fields in which Donation differs from the donation
	// the change was decided on, in a fixed order: an engine writes these
	// and only these.
	Changed []DonationField
	// History is the line to append to the donation's history; nil adds
	// none.
	History *StatusChange
	// Delta is what the change does to the campaign's totals.
	Delta TotalsDelta
	// At is when the change happened; the campaign's totals are stamped
	// with it when Delta is not zero.
	At time.Time
}

// DonationField names a field of a Donation that a state change may write.
// The others (amount, donor, campaign, place in line...) are fixed at
// acceptance.
type DonationField int

// The fields a state change may write.
const (
	FieldStatus DonationField = iota
	FieldPaymentMethod
	FieldAttempt
	FieldKeySince
	FieldPaymentIntentID
	FieldClientSecret
	FieldNextAction
	FieldFailureCode
	FieldActionSince
	FieldClaimedBy
	FieldLeaseUntil
	FieldRefunded
	FieldDisputed
	FieldUpdatedAt
)

// donationFields pairs each field a state change may write with how two
// donations are told apart in it, in the order Transition.Changed lists
// them. Times compare as instants and next_action as bytes, so a value
// written back as it was read is never a change.
var donationFields = []struct {
	field DonationField
	name  string
	same  func(a, b *Donation) bool
}{
	{FieldStatus, "status", func(a, b *Donation) bool { return a.Status == b.Status }},
	{FieldPaymentMethod, "payment_method", func(a, b *Donation) bool { return a.PaymentMethod == b.PaymentMethod }},
	{FieldAttempt, "attempt", func(a, b *Donation) bool { return a.Attempt == b.Attempt }},
	{FieldKeySince, "key_since", func(a, b *Donation) bool { return sameTime(a.KeySince, b.KeySince) }},
	{FieldPaymentIntentID, "payment_intent_id", func(a, b *Donation) bool { return a.PaymentIntentID == b.PaymentIntentID }},
	{FieldClientSecret, "client_secret", func(a, b *Donation) bool { return a.ClientSecret == b.ClientSecret }},
	{FieldNextAction, "next_action", func(a, b *Donation) bool { return bytes.Equal(a.NextAction, b.NextAction) }},
	{FieldFailureCode, "failure_code", func(a, b *Donation) bool { return a.FailureCode == b.FailureCode }},
	{FieldActionSince, "action_since", func(a, b *Donation) bool { return sameTime(a.ActionSince, b.ActionSince) }},
	{FieldClaimedBy, "claimed_by", func(a, b *Donation) bool { return a.ClaimedBy == b.ClaimedBy }},
	{FieldLeaseUntil, "lease_until", func(a, b *Donation) bool { return sameTime(a.LeaseUntil, b.LeaseUntil) }},
	{FieldRefunded, "refunded", func(a, b *Donation) bool { return a.Refunded == b.Refunded }},
	{FieldDisputed, "disputed", func(a, b *Donation) bool { return a.Disputed == b.Disputed }},
	{FieldUpdatedAt, "updated_at", func(a, b *Donation) bool { return a.UpdatedAt.Equal(b.UpdatedAt) }},
}

func (f DonationField) String() string {
	if f >= 0 && int(f) < len(donationFields) {
		return donationFields[f].name
	}
	return fmt.Sprintf("DonationField(%d)", int(f))
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// changedFields lists the fields a state change may write in which next
// differs from d.
func changedFields(d, next *Donation) []DonationField {
	var out []DonationField
	for _, f := range donationFields {
		if !f.same(d, next) {
			out = append(out, f.field)
		}
	}
	return out
}

func newTransition(d, next *Donation, line *StatusChange, delta TotalsDelta, at time.Time) Transition {
	return Transition{Donation: next, Changed: changedFields(d, next), History: line, Delta: delta, At: at}
}

// ApplySettlement decides what settlement s does to d, s.At being when it
// happened (the caller sets it). The move must be allowed: d's status
// among s.From when that is given, and the move one CanMove allows
// (ESTATE otherwise, so a late failure never overwrites a success). The
// PaymentIntent and client secret are recorded when s names them and kept
// when it does not; next_action is kept only while the donation requires
// action, and action_since is stamped on entering requires_action; the
// failure code is this settlement's (none unless it gives one); the
// dispatcher's claim is cleared, since a settled gift is nobody's to
// charge. The history gains the new status with s's failure code and note;
// pending and raised move by DeltaOf.
func ApplySettlement(d *Donation, s Settlement) (Transition, error) {
	if err := checkSettle(s, d.Status); err != nil {
		return Transition{}, err
	}
	at := s.At
	next := *d
	next.Status = s.Status
	if s.PaymentIntentID != "" {
		next.PaymentIntentID = s.PaymentIntentID
	}
	if s.ClientSecret != "" {
		next.ClientSecret = s.ClientSecret
	}
	if s.Status == StatusRequiresAction {
		if len(s.NextAction) > 0 {
			next.NextAction = slices.Clone(s.NextAction)
		}
		next.ActionSince = &at
	} else {
		next.NextAction = nil
	}
	next.FailureCode = s.FailureCode
	next.ClaimedBy, next.LeaseUntil = "", nil
	next.UpdatedAt = at
	line := &StatusChange{Status: s.Status, At: at, FailureCode: s.FailureCode, Note: s.Note}
	return newTransition(d, &next, line, DeltaOf(d, s.Status), at), nil
}

// checkSettle returns ESTATE unless settlement s may apply to a donation
// now in status from: from must be among s.From (when given) and the move
// allowed by CanMove.
func checkSettle(s Settlement, from DonationStatus) error {
	if len(s.From) > 0 && !slices.Contains(s.From, from) {
		return Errorf(ESTATE, "Donation is %s.", from)
	}
	if !CanMove(from, s.Status) {
		return Errorf(ESTATE, "Donation cannot move from %s to %s.", from, s.Status)
	}
	return nil
}

// cancelNote is the history note of a donor's cancel.
const cancelNote = "canceled by the donor"

// ApplyCancel decides a donor's cancel of d at at: only a donation still
// waiting in line (accepted) may be canceled, ESTATE in any other status
// (once claimed, a charge may be under way). It is the settlement to
// canceled from accepted, with its note.
func ApplyCancel(d *Donation, at time.Time) (Transition, error) {
	return ApplySettlement(d, Settlement{DonationID: d.ID, Status: StatusCanceled,
		From: []DonationStatus{StatusAccepted}, Note: cancelNote, At: at})
}

// paymentMethodNote is the history note of a new payment method.
const paymentMethodNote = "new payment method"

// ApplyPaymentMethod decides a donor's new payment method pm for d at at.
// Only a failed donation takes one (ESTATE otherwise). It goes back in line
// at its old place (Seq is kept) with the next key generation, not yet sent
// (no KeySince), and without the failed attempt's failure code and
// next_action; the failed attempt's PaymentIntent stays recorded, so a late
// report about it still finds the donation.
func ApplyPaymentMethod(d *Donation, pm string, at time.Time) (Transition, error) {
	if d.Status != StatusFailed {
		return Transition{}, Errorf(ESTATE, "Only a failed donation takes another payment method; this one is %s.", d.Status)
	}
	next := *d
	next.Status = StatusAccepted
	next.PaymentMethod = pm
	next.Attempt++
	next.KeySince = nil
	next.FailureCode = ""
	next.NextAction = nil
	next.ClaimedBy, next.LeaseUntil = "", nil
	next.UpdatedAt = at
	line := &StatusChange{Status: StatusAccepted, At: at, Note: paymentMethodNote}
	return newTransition(d, &next, line, DeltaOf(d, StatusAccepted), at), nil
}

// ApplyNewKeyGeneration decides the move of d to the next idempotency-key
// generation at at, by owner, who saw generation from: after a consistent
// lookup proved that no payment exists for the current key, or found a
// PaymentIntent (paymentIntentID, recorded when not empty) that still
// awaits a confirmation. d must be processing at generation from and
// claimed by owner (ESTATE otherwise: a second caller that saw the same
// generation loses, and so does a dispatcher whose claim another took).
// The new key is first sent now (KeySince = at); the status, the claim
// and the totals do not change.
func ApplyNewKeyGeneration(d *Donation, owner string, from int, paymentIntentID string, at time.Time) (Transition, error) {
	if d.Status != StatusProcessing || d.Attempt != from {
		return Transition{}, Errorf(ESTATE, "Donation is %s at key generation %d, not processing at %d.", d.Status, d.Attempt, from)
	}
	if d.ClaimedBy != owner {
		return Transition{}, Errorf(ESTATE, "Donation is claimed by %q, not %q.", d.ClaimedBy, owner)
	}
	next := *d
	next.Attempt++
	next.KeySince = &at
	if paymentIntentID != "" {
		next.PaymentIntentID = paymentIntentID
	}
	next.UpdatedAt = at
	line := &StatusChange{Status: d.Status, At: at, Note: newKeyNote(from, paymentIntentID)}
	return newTransition(d, &next, line, TotalsDelta{}, at), nil
}

// newKeyNote is the history line of a new key generation.
func newKeyNote(from int, paymentIntentID string) string {
	if paymentIntentID != "" {
		return fmt.Sprintf("new idempotency key (generation %d) to confirm %s", from+1, paymentIntentID)
	}
	return fmt.Sprintf("new idempotency key (generation %d): no payment exists for generation %d", from+1, from)
}

// ApplyReversal decides what a reversal of kind, reported at at as the
// cumulative total refunded (or disputed) so far, does to d. Amounts only
// grow: a report that is old or replayed changes nothing and is refused
// with ESTATE ("Already recorded."), so the caller can tell it apart. On
// a succeeded gift raised goes down by what newly left, and never by more
// than the gift's amount in all. A reversal may arrive before the success
// it reverses (webhooks come out of order): it is recorded all the same,
// and the success then counts only what is left (see DeltaOf). The status
// does not change; the history gains a line saying what was taken back.
// An unknown kind is EINVALID.
func ApplyReversal(d *Donation, kind Reversal, total int64, at time.Time) (Transition, error) {
	next := *d
	switch kind {
	case ReversalRefund:
		next.Refunded = max(d.Refunded, total)
	case ReversalDispute:
		next.Disputed = max(d.Disputed, total)
	default:
		return Transition{}, Errorf(EINVALID, "Unknown reversal %q.", kind)
	}
	if next.Refunded == d.Refunded && next.Disputed == d.Disputed {
		return Transition{}, Errorf(ESTATE, "Already recorded.")
	}
	var delta TotalsDelta
	if d.Status == StatusSucceeded {
		delta.Raised = next.Net() - d.Net()
	}
	next.UpdatedAt = at
	line := &StatusChange{Status: d.Status, At: at, Note: fmt.Sprintf("%s: %d in all", kind, total)}
	return newTransition(d, &next, line, delta, at), nil
}

// Replay answers req, a request whose idempotency key is already held by
// prev, an intake of its kind: the same request (the same request hash)
// gets a copy of prev, marked replayed; another request gets
// EIDEMMISMATCH. The accept path of every engine, and the lookup that
// answers a retry when a new intake cannot be taken, answer with exactly
// this.
func Replay(prev, req Intake) AcceptResult {
	if !bytes.Equal(prev.requestSum(), req.requestSum()) {
		return AcceptResult{Err: Errorf(EIDEMMISMATCH, "This Idempotency-Key was already used with a different request.")}
	}
	return AcceptResult{Intake: prev.clone(), Replayed: true}
}
