package floodgate

import (
	"fmt"
	"time"
)

// Window bounds when a PaymentIntent can have been created, inclusive, in
// whole seconds of the provider's clock (Stripe's created is a Unix time
// in seconds).
type Window struct {
	From, To time.Time
}

// Covers reports whether w lies within c.
func (w Window) Covers(c Window) bool { return !c.From.Before(w.From) && !c.To.After(w.To) }

// String is w as the history prints it.
func (w Window) String() string {
	return fmt.Sprintf("[%s, %s]", w.From.UTC().Format(time.RFC3339), w.To.UTC().Format(time.RFC3339))
}

// SweptOrder names an order a sweep covered and found no PaymentIntent
// for, as the sweep saw it: at key generation Attempt with Sweeps complete
// sweeps recorded before. A record applies only to the order as it was
// seen (see ApplySweep).
type SweptOrder struct {
	ID      string
	Attempt int
	Sweeps  int
}

// AbsenceSweeps is how many complete sweeps must find no PaymentIntent for
// an unknown order before it may take a new key (see ApplySweptNewKey).
const AbsenceSweeps = 2

// clearUnknown forgets that next's outcome was unknown: it is settled, or
// moves to a new key.
func clearUnknown(next *PaymentOrder) {
	next.UnknownFrom, next.UnknownTo, next.Sweeps, next.SweptAt, next.UnknownCause = nil, nil, 0, nil, ""
}

// MaxAbsences bounds the new keys sweeps give an order because none found
// a payment, when the outcome was hidden by something other than the
// provider's own failure (an idempotency error, a payment method the
// provider says is used already): after that many, the order fails
// (processing_error), which is safe, and the payer may bring another
// payment method. Against a failing provider (cause "server") keys are
// renewed for as long as the failure lasts, the sweeps pacing them.
const MaxAbsences = 3

// GivesUp reports whether o, whose outcome two sweeps found no payment
// for, fails instead of taking another key (see MaxAbsences).
func (o *PaymentOrder) GivesUp() bool {
	return o.UnknownCause != string(ProviderServer) && o.Absences+1 >= MaxAbsences
}

// ApplyUnknown decides handing o, held by the claim that issued token, to
// the sweeps at at (now being the store's clock): the outcome of its
// current key is unknown (hidden by a failure of class cause), and any
// PaymentIntent the key made was created within w. o must be processing and held by the claim (ESTATE otherwise).
// The claim ends, and o leaves the workers' line (no claim takes an order
// whose outcome is unknown) until a sweep or a webhook settles it or gives
// it a new key; its sweeps start from none. The history gains a line
// naming the window; the status and the effect do not change. A window
// that ends before it begins is EINVALID.
func ApplyUnknown(o *PaymentOrder, token int64, w Window, cause string, at, now time.Time) (Transition, error) {
	if w.To.Before(w.From) {
		return Transition{}, Errorf(EINVALID, "The window %s ends before it begins.", w)
	}
	if o.Status != StatusProcessing {
		return Transition{}, Errorf(ESTATE, "%s is %s, not processing.", o.Kind.noun(), o.Status)
	}
	if !o.Held(token, now) {
		return Transition{}, staleClaim(o, token)
	}
	next := *o
	from, to := w.From, w.To
	next.UnknownFrom, next.UnknownTo, next.Sweeps, next.SweptAt, next.UnknownCause = &from, &to, 0, nil, cause
	next.ClaimedBy, next.LeaseUntil = "", nil
	next.UpdatedAt = at
	line := &StatusChange{Status: o.Status, At: at,
		Note: fmt.Sprintf("outcome of key generation %d unknown: swept for PaymentIntents created in %s", o.Attempt, w)}
	return newTransition(o, &next, line, at), nil
}

// SweepStart bounds when a sweep started on the provider's clock: no
// earlier than Earliest, no later than Latest (see ProviderClock).
type SweepStart struct {
	Earliest, Latest time.Time
}

// SweepStartAt is a sweep start known exactly (tests, a provider clock
// read without doubt).
func SweepStartAt(t time.Time) SweepStart { return SweepStart{Earliest: t, Latest: t} }

// SweepAfterWindow is how long after an order's window ends a sweep must
// start to count for it: the provider stamps created in whole seconds, so
// a PaymentIntent created at the window's last second shows only once
// that second is over.
const SweepAfterWindow = time.Second

// SweepGap is how long after the latest a counted sweep can have started
// the next sweep that counts for the same order may start, at the
// earliest: a create that was executing while the first sweep read its
// pages shows by then.
const SweepGap = 3 * time.Second

// ApplySweep decides recording that a complete sweep, started within
// start (the provider's clock), covered o's window and found no
// PaymentIntent for it, the sweep having seen o as seen. o must still be
// processing with an unknown outcome, at the generation and with the
// count of sweeps the sweep saw (ESTATE otherwise: it was settled, moved
// on, or another sweep was recorded first). The sweep counts only if it
// started at least SweepAfterWindow after the window ended and at least
// SweepGap after the latest the sweep recorded before can have started
// (ESTATE otherwise): whatever the sweeper does, the store never counts a
// sweep that cannot prove absence. Sweeps grows by one and SweptAt
// becomes the latest this one can have started; the history gains no
// line.
func ApplySweep(o *PaymentOrder, seen SweptOrder, start SweepStart, at time.Time) (Transition, error) {
	if err := checkUnknown(o, seen.Attempt); err != nil {
		return Transition{}, err
	}
	if o.Sweeps != seen.Sweeps {
		return Transition{}, Errorf(ESTATE, "%s has %d sweeps recorded, not %d.", o.Kind.noun(), o.Sweeps, seen.Sweeps)
	}
	if start.Earliest.Before(o.UnknownTo.Add(SweepAfterWindow)) {
		return Transition{}, Errorf(ESTATE, "A sweep that started at %s, before %s after the window %s ended, proves nothing.",
			start.Earliest.UTC().Format(time.RFC3339Nano), SweepAfterWindow, Window{*o.UnknownFrom, *o.UnknownTo})
	}
	if o.SweptAt != nil && start.Earliest.Before(o.SweptAt.Add(SweepGap)) {
		return Transition{}, Errorf(ESTATE, "A sweep that started at %s, less than %s after the one recorded at %s, proves nothing more.",
			start.Earliest.UTC().Format(time.RFC3339Nano), SweepGap, o.SweptAt.UTC().Format(time.RFC3339Nano))
	}
	latest := start.Latest
	next := *o
	next.Sweeps++
	next.SweptAt = &latest
	next.UpdatedAt = at
	return newTransition(o, &next, nil, at), nil
}

// ApplySweptNewKey decides moving o, whose outcome at key generation from
// was unknown, to the next generation at at, now being the store's clock:
// paymentIntentID "" when
// AbsenceSweeps complete sweeps found no PaymentIntent for it, or the id
// of the PaymentIntent a sweep found still awaiting a confirmation (to be
// confirmed under the new key). o must be processing with an unknown
// outcome at generation from (ESTATE otherwise), and, for a new key
// because nothing was found, have its sweeps recorded (ESTATE otherwise).
// An order that GivesUp fails instead (processing_error, its effect and
// history those of that settlement). Otherwise the unknown outcome is
// forgotten and o goes back to the line at its old
// place, claimable at once (its lease ends at now, on the store's clock,
// so that a node whose own clock runs ahead does not hold it back), with a
// key not yet sent (KeySince is stamped by the claim that sends it). The
// history gains a line; the status and the effect do not change.
func ApplySweptNewKey(o *PaymentOrder, from int, paymentIntentID string, at, now time.Time) (Transition, error) {
	if err := checkUnknown(o, from); err != nil {
		return Transition{}, err
	}
	if paymentIntentID == "" && o.Sweeps < AbsenceSweeps {
		return Transition{}, Errorf(ESTATE, "%s has %d of the %d sweeps that prove no payment exists.", o.Kind.noun(), o.Sweeps, AbsenceSweeps)
	}
	if paymentIntentID == "" && o.GivesUp() {
		return ApplySettlement(o, Settlement{OrderID: o.ID, Status: StatusFailed, FailureCode: "processing_error", At: at,
			Note: fmt.Sprintf("no payment after %d unknown outcomes (%s) that sweeps found none for", o.Absences+1, o.UnknownCause)}, now)
	}
	next := *o
	next.Attempt++
	next.KeySince = nil
	next.Format = CurrentFormat
	if paymentIntentID != "" {
		next.PaymentIntentID = paymentIntentID
	} else {
		next.Absences++
	}
	clearUnknown(&next)
	next.ClaimedBy, next.LeaseUntil = "", &now
	next.UpdatedAt = at
	note := newKeyNote(from, paymentIntentID)
	if paymentIntentID == "" {
		note += fmt.Sprintf(" (%d sweeps of %s found none)", o.Sweeps, Window{*o.UnknownFrom, *o.UnknownTo})
	}
	line := &StatusChange{Status: o.Status, At: at, Note: note}
	return newTransition(o, &next, line, at), nil
}

// checkUnknown returns ESTATE unless o is processing at generation attempt
// with an unknown outcome.
func checkUnknown(o *PaymentOrder, attempt int) error {
	if o.Status != StatusProcessing || o.Attempt != attempt {
		return Errorf(ESTATE, "%s is %s at key generation %d, not processing at %d.", o.Kind.noun(), o.Status, o.Attempt, attempt)
	}
	if o.UnknownFrom == nil || o.UnknownTo == nil {
		return Errorf(ESTATE, "%s has no unknown outcome.", o.Kind.noun())
	}
	return nil
}
