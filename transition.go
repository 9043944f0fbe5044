package floodgate

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Transition is what one change of a payment order writes: the order as it
// will be, the line its history gains and the change's effect on what the
// order pays for. The Apply functions decide it from the order as it is;
// every engine locks the order, asks one of them, and writes exactly the
// Transition in one transaction. The rules live here once, so no engine
// can hold a rule of its own.
//
// A refusal may come with a Transition that holds only History: a late
// result from a claim no longer held is not applied, but the engine
// records that line, alone, before it returns the refusal.
type Transition struct {
	// Order is the order after the change, every field computed; the
	// fields the change does not write are as they were.
	Order *PaymentOrder
	// Changed lists the fields in which Order differs from the order the
	// change was decided on, in a fixed order: an engine writes these and
	// only these.
	Changed []OrderField
	// History is the line to append to the order's history; nil adds
	// none.
	History *StatusChange
	// Effect is what the change does to what the order pays for.
	Effect Effect
	// At is when the change happened; the campaign's totals are stamped
	// with it when Effect is not zero.
	At time.Time
}

// OrderField names a field of a PaymentOrder that a change may write. The
// others (amount, kind, what it pays for, place in line...) are fixed when
// the order is made; the token is written only by claims.
type OrderField int

// The fields a change may write.
const (
	FieldStatus OrderField = iota
	FieldPaymentMethod
	FieldAttempt
	FieldKeySince
	FieldFormat
	FieldPaymentIntentID
	FieldClientSecret
	FieldNextAction
	FieldFailureCode
	FieldActionSince
	FieldClaimedBy
	FieldLeaseUntil
	FieldRefunded
	FieldDisputed
	FieldUnknownFrom
	FieldUnknownTo
	FieldSweeps
	FieldSweptAt
	FieldUnknownCause
	FieldAbsences
	FieldUpdatedAt
)

// orderFields pairs each field a change may write with how two orders are
// told apart in it, in the order Transition.Changed lists them, and with
// its value as an engine writes it. Times compare as instants and
// next_action as bytes, so a value written back as it was read is never a
// change. A field's name is the name of the column that holds it in every
// engine.
var orderFields = []struct {
	field OrderField
	name  string
	same  func(a, b *PaymentOrder) bool
	value func(o *PaymentOrder) any
}{
	{FieldStatus, "status", func(a, b *PaymentOrder) bool { return a.Status == b.Status },
		func(o *PaymentOrder) any { return string(o.Status) }},
	{FieldPaymentMethod, "payment_method", func(a, b *PaymentOrder) bool { return a.PaymentMethod == b.PaymentMethod },
		func(o *PaymentOrder) any { return o.PaymentMethod }},
	{FieldAttempt, "attempt", func(a, b *PaymentOrder) bool { return a.Attempt == b.Attempt },
		func(o *PaymentOrder) any { return o.Attempt }},
	{FieldKeySince, "key_since", func(a, b *PaymentOrder) bool { return sameTime(a.KeySince, b.KeySince) },
		func(o *PaymentOrder) any { return o.KeySince }},
	{FieldFormat, "format", func(a, b *PaymentOrder) bool { return a.Format == b.Format },
		func(o *PaymentOrder) any { return int(o.Format) }},
	{FieldPaymentIntentID, "payment_intent_id", func(a, b *PaymentOrder) bool { return a.PaymentIntentID == b.PaymentIntentID },
		func(o *PaymentOrder) any { return o.PaymentIntentID }},
	{FieldClientSecret, "client_secret", func(a, b *PaymentOrder) bool { return a.ClientSecret == b.ClientSecret },
		func(o *PaymentOrder) any { return o.ClientSecret }},
	{FieldNextAction, "next_action", func(a, b *PaymentOrder) bool { return bytes.Equal(a.NextAction, b.NextAction) },
		func(o *PaymentOrder) any { return string(o.NextAction) }},
	{FieldFailureCode, "failure_code", func(a, b *PaymentOrder) bool { return a.FailureCode == b.FailureCode },
		func(o *PaymentOrder) any { return o.FailureCode }},
	{FieldActionSince, "action_since", func(a, b *PaymentOrder) bool { return sameTime(a.ActionSince, b.ActionSince) },
		func(o *PaymentOrder) any { return o.ActionSince }},
	{FieldClaimedBy, "claimed_by", func(a, b *PaymentOrder) bool { return a.ClaimedBy == b.ClaimedBy },
		func(o *PaymentOrder) any { return o.ClaimedBy }},
	{FieldLeaseUntil, "lease_until", func(a, b *PaymentOrder) bool { return sameTime(a.LeaseUntil, b.LeaseUntil) },
		func(o *PaymentOrder) any { return o.LeaseUntil }},
	{FieldRefunded, "refunded", func(a, b *PaymentOrder) bool { return a.Refunded == b.Refunded },
		func(o *PaymentOrder) any { return o.Refunded }},
	{FieldDisputed, "disputed", func(a, b *PaymentOrder) bool { return a.Disputed == b.Disputed },
		func(o *PaymentOrder) any { return o.Disputed }},
	{FieldUnknownFrom, "unknown_from", func(a, b *PaymentOrder) bool { return sameTime(a.UnknownFrom, b.UnknownFrom) },
		func(o *PaymentOrder) any { return o.UnknownFrom }},
	{FieldUnknownTo, "unknown_to", func(a, b *PaymentOrder) bool { return sameTime(a.UnknownTo, b.UnknownTo) },
		func(o *PaymentOrder) any { return o.UnknownTo }},
	{FieldSweeps, "sweeps", func(a, b *PaymentOrder) bool { return a.Sweeps == b.Sweeps },
		func(o *PaymentOrder) any { return o.Sweeps }},
	{FieldSweptAt, "swept_at", func(a, b *PaymentOrder) bool { return sameTime(a.SweptAt, b.SweptAt) },
		func(o *PaymentOrder) any { return o.SweptAt }},
	{FieldUnknownCause, "unknown_cause", func(a, b *PaymentOrder) bool { return a.UnknownCause == b.UnknownCause },
		func(o *PaymentOrder) any { return o.UnknownCause }},
	{FieldAbsences, "absences", func(a, b *PaymentOrder) bool { return a.Absences == b.Absences },
		func(o *PaymentOrder) any { return o.Absences }},
	{FieldUpdatedAt, "updated_at", func(a, b *PaymentOrder) bool { return a.UpdatedAt.Equal(b.UpdatedAt) },
		func(o *PaymentOrder) any { return o.UpdatedAt }},
}

// Value is o's value in field f as an engine writes it, in the column
// named f.String(): a string (empty meaning none: SQL NULL), an int, an
// int64, a *time.Time (nil meaning none) or a time.Time.
func (o *PaymentOrder) Value(f OrderField) any {
	if f >= 0 && int(f) < len(orderFields) {
		return orderFields[f].value(o)
	}
	return nil
}

func (f OrderField) String() string {
	if f >= 0 && int(f) < len(orderFields) {
		return orderFields[f].name
	}
	return fmt.Sprintf("OrderField(%d)", int(f))
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// changedFields lists the fields a change may write in which next differs
// from o.
func changedFields(o, next *PaymentOrder) []OrderField {
	var out []OrderField
	for _, f := range orderFields {
		if !f.same(o, next) {
			out = append(out, f.field)
		}
	}
	return out
}

func newTransition(o, next *PaymentOrder, line *StatusChange, at time.Time) Transition {
	return Transition{Order: next, Changed: changedFields(o, next), History: line, Effect: EffectOf(o, next), At: at}
}

// ApplySettlement decides what settlement s does to o, s.At being when it
// happened (the caller sets it) and now the store's clock. The move must
// be allowed: o's status among s.From when that is given, and the move one
// CanMove allows (ESTATE otherwise, so a late failure never overwrites a
// success). A settlement made under a claim (s.Token) applies only while
// that claim holds o (see Held): otherwise it is a late result from a
// stale holder, refused with ESTATE and recorded as a history line, never
// applied over a newer attempt. The PaymentIntent and client secret are
// recorded when s names them and kept when it does not; next_action is
// kept only while the order requires action, and action_since is stamped
// on entering requires_action; the failure code is this settlement's (none
// unless it gives one); the dispatcher's claim is cleared, since a settled
// order is nobody's to charge, and so is an unknown outcome (a settlement
// is what it was waiting for). The history gains the new status with s's
// failure code and note; the effect is EffectOf's.
func ApplySettlement(o *PaymentOrder, s Settlement, now time.Time) (Transition, error) {
	if err := checkSettle(o, s); err != nil {
		return Transition{}, err
	}
	at := s.At
	if s.Token != 0 && !o.Held(s.Token, now) {
		line := &StatusChange{Status: o.Status, At: at, FailureCode: s.FailureCode, Note: lateNote(s)}
		return Transition{History: line, At: at}, staleClaim(o, s.Token)
	}
	next := *o
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
	clearUnknown(&next)
	next.UpdatedAt = at
	line := &StatusChange{Status: s.Status, At: at, FailureCode: s.FailureCode, Note: s.Note}
	return newTransition(o, &next, line, at), nil
}

// checkSettle returns ESTATE unless settlement s may apply to o: o's
// status must be among s.From (when given) and the move allowed by
// CanMove.
func checkSettle(o *PaymentOrder, s Settlement) error {
	if len(s.From) > 0 && !slices.Contains(s.From, o.Status) {
		return Errorf(ESTATE, "%s is %s.", o.Kind.noun(), o.Status)
	}
	if !CanMove(o.Status, s.Status) {
		return Errorf(ESTATE, "%s cannot move from %s to %s.", o.Kind.noun(), o.Status, s.Status)
	}
	return nil
}

// staleClaim is the refusal of a write made under a claim (token) that no
// longer holds o.
func staleClaim(o *PaymentOrder, token int64) error {
	return Errorf(ESTATE, "%s is no longer held by the claim with fencing token %d.", o.Kind.noun(), token)
}

// lateNote is the history note of a late result from a stale holder: what
// it reported, and that it was not applied.
func lateNote(s Settlement) string {
	var b strings.Builder
	fmt.Fprintf(&b, "late result from a claim no longer held (fencing token %d): %s", s.Token, s.Status)
	if s.PaymentIntentID != "" {
		fmt.Fprintf(&b, " (%s)", s.PaymentIntentID)
	}
	b.WriteString("; not applied")
	return b.String()
}

// cancelNote is the history note of a donor's cancel.
const cancelNote = "canceled by the donor"

// ApplyCancel decides a payer's cancel of o at at: only an order still
// waiting in line (accepted) may be canceled, ESTATE in any other status
// (once claimed, a charge may be under way). It is the settlement to
// canceled from accepted, with its note.
func ApplyCancel(o *PaymentOrder, at time.Time) (Transition, error) {
	return ApplySettlement(o, Settlement{OrderID: o.ID, Status: StatusCanceled,
		From: []DonationStatus{StatusAccepted}, Note: cancelNote, At: at}, at)
}

// paymentMethodNote is the history note of a new payment method.
const paymentMethodNote = "new payment method"

// ApplyPaymentMethod decides a payer's new payment method pm for o at at.
// Only a failed order takes one (ESTATE otherwise). It goes back in line
// at its old place (Seq is kept) with the next key generation, in the
// current request format and not yet sent (no KeySince), and without the
// failed attempt's failure code and next_action; the failed attempt's
// PaymentIntent stays recorded, so a late report about it still finds the
// order.
func ApplyPaymentMethod(o *PaymentOrder, pm string, at time.Time) (Transition, error) {
	if o.Status != StatusFailed {
		return Transition{}, Errorf(ESTATE, "Only a failed %s takes another payment method; this one is %s.",
			strings.ToLower(o.Kind.noun()), o.Status)
	}
	next := *o
	next.Status = StatusAccepted
	next.PaymentMethod = pm
	next.Absences = 0
	next.Attempt++
	next.KeySince = nil
	next.Format = CurrentFormat
	next.FailureCode = ""
	next.NextAction = nil
	next.ClaimedBy, next.LeaseUntil = "", nil
	next.UpdatedAt = at
	line := &StatusChange{Status: StatusAccepted, At: at, Note: paymentMethodNote}
	return newTransition(o, &next, line, at), nil
}

// ApplyNewKeyGeneration decides the move of o to the next idempotency-key
// generation at at, under the claim that issued token, which saw
// generation from; now is the store's clock. It comes after a consistent
// lookup proved that no payment exists for the current key, or found a
// PaymentIntent (paymentIntentID, recorded when not empty) that still
// awaits a confirmation. o must be processing at generation from (ESTATE
// otherwise: a second caller that saw the same generation loses) and held
// by the claim (ESTATE otherwise: a dispatcher whose claim lapsed or was
// taken over must not move another's attempt on). The new key is first
// sent now (KeySince = at), in the current request format; the status,
// the claim and the effect do not change.
func ApplyNewKeyGeneration(o *PaymentOrder, token int64, from int, paymentIntentID string, at, now time.Time) (Transition, error) {
	if o.Status != StatusProcessing || o.Attempt != from {
		return Transition{}, Errorf(ESTATE, "%s is %s at key generation %d, not processing at %d.", o.Kind.noun(), o.Status, o.Attempt, from)
	}
	if !o.Held(token, now) {
		return Transition{}, staleClaim(o, token)
	}
	next := *o
	next.Attempt++
	next.KeySince = &at
	next.Format = CurrentFormat
	if paymentIntentID != "" {
		next.PaymentIntentID = paymentIntentID
	}
	next.UpdatedAt = at
	line := &StatusChange{Status: o.Status, At: at, Note: newKeyNote(from, paymentIntentID)}
	return newTransition(o, &next, line, at), nil
}

// newKeyNote is the history line of a new key generation.
func newKeyNote(from int, paymentIntentID string) string {
	if paymentIntentID != "" {
		return fmt.Sprintf("new idempotency key (generation %d) to confirm %s", from+1, paymentIntentID)
	}
	return fmt.Sprintf("new idempotency key (generation %d): no payment exists for generation %d", from+1, from)
}

// ApplyDefer decides giving up the claim that issued token on o until
// until, now being the store's clock: o keeps its status and key, and any
// dispatcher may resume it after that time (it is then an orphan, see
// Store.ClaimOrders). o must be processing and held by the claim (ESTATE
// otherwise: a dispatcher whose lease lapsed must not free another's
// claim). Nothing else changes, and the history gains no line.
func ApplyDefer(o *PaymentOrder, token int64, until, now time.Time) (Transition, error) {
	if o.Status != StatusProcessing {
		return Transition{}, Errorf(ESTATE, "%s is %s, not processing.", o.Kind.noun(), o.Status)
	}
	if !o.Held(token, now) {
		return Transition{}, staleClaim(o, token)
	}
	next := *o
	next.ClaimedBy, next.LeaseUntil = "", &until
	return newTransition(o, &next, nil, now), nil
}

// ApplyReversal decides what a reversal of kind, reported at at as the
// cumulative total refunded (or disputed) so far, does to o. Amounts only
// grow: a report that is old or replayed changes nothing and is refused
// with ESTATE ("Already recorded."), so the caller can tell it apart. A
// reversal may arrive before the success it reverses (webhooks come out of
// order): it is recorded all the same, and the success then counts only
// what is left (see EffectOf). The status does not change; the history
// gains a line saying what was taken back. An unknown kind is EINVALID.
func ApplyReversal(o *PaymentOrder, kind Reversal, total int64, at time.Time) (Transition, error) {
	next := *o
	switch kind {
	case ReversalRefund:
		next.Refunded = max(o.Refunded, total)
	case ReversalDispute:
		next.Disputed = max(o.Disputed, total)
	default:
		return Transition{}, Errorf(EINVALID, "Unknown reversal %q.", kind)
	}
	if next.Refunded == o.Refunded && next.Disputed == o.Disputed {
		return Transition{}, Errorf(ESTATE, "Already recorded.")
	}
	next.UpdatedAt = at
	line := &StatusChange{Status: o.Status, At: at, Note: fmt.Sprintf("%s: %d in all", kind, total)}
	return newTransition(o, &next, line, at), nil
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
