package floodgate

import (
	"testing"
	"time"
)

// unknownIn is an order whose outcome at generation 0 was hidden by a
// provider's 5xx, swept for w, with sweeps recorded, the last at sweptAt.
func unknownIn(w Window, sweeps int, sweptAt *time.Time, edits ...func(*PaymentOrder)) *PaymentOrder {
	return orderIn(StatusProcessing, append([]func(*PaymentOrder){func(d *PaymentOrder) {
		d.ClaimedBy, d.LeaseUntil = "", nil
		d.UnknownFrom, d.UnknownTo, d.Sweeps, d.SweptAt = timeAt(w.From), timeAt(w.To), sweeps, sweptAt
		d.UnknownCause = "server"
	}}, edits...)...)
}

var sweepWindow = Window{From: t0.Add(-2 * time.Second), To: t0.Add(3 * time.Second)}

func TestWindow(t *testing.T) {
	w := Window{From: t0, To: t1}
	for _, tt := range []struct {
		c    Window
		want bool
	}{
		{w, true},
		{Window{t0.Add(time.Second), t1.Add(-time.Second)}, true},
		{Window{t0.Add(-time.Second), t1}, false},
		{Window{t0, t1.Add(time.Second)}, false},
	} {
		if got := w.Covers(tt.c); got != tt.want {
			t.Errorf("%s covers %s = %v", w, tt.c, got)
		}
	}
	if got := w.String(); got != "[2026-12-04T20:00:00Z, 2026-12-04T20:01:00Z]" {
		t.Errorf("String = %s", got)
	}
}

func TestApplyUnknown(t *testing.T) {
	unknown := func(token int64, w Window) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplyUnknown(d, token, w, "server", t1, t1) }
	}
	tests := []transitionCase{{
		name:   "the claim ends and the order waits for sweeps over its window",
		before: orderIn(StatusProcessing),
		decide: unknown(5, sweepWindow),
		want: func(d *PaymentOrder) {
			d.ClaimedBy, d.LeaseUntil = "", nil
			d.UnknownFrom, d.UnknownTo, d.UnknownCause = timeAt(sweepWindow.From), timeAt(sweepWindow.To), "server"
			d.UpdatedAt = t1
		},
		changed: []OrderField{FieldClaimedBy, FieldLeaseUntil, FieldUnknownFrom, FieldUnknownTo, FieldUnknownCause, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "outcome of key generation 0 unknown: swept for PaymentIntents created in [2026-12-04T19:59:58Z, 2026-12-04T20:00:03Z]"},
	}, {
		name:   "refused: a window that ends before it begins",
		before: orderIn(StatusProcessing),
		decide: unknown(5, Window{From: t1, To: t0}),
		code:   EINVALID,
	}, {
		name:   "refused: a claim taken over since",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.Token = 6 }),
		decide: unknown(5, sweepWindow),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: the lease ran out on the store's clock",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.LeaseUntil = timeAt(t0) }),
		decide: unknown(5, sweepWindow),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: unknown already (no claim holds it)",
		before: unknownIn(sweepWindow, 0, nil),
		decide: unknown(5, sweepWindow),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}}
	for _, s := range []DonationStatus{StatusAccepted, StatusRequiresAction, StatusSucceeded, StatusFailed, StatusCanceled} {
		tests = append(tests, transitionCase{name: "refused when " + string(s), before: orderIn(s), decide: unknown(5, sweepWindow),
			code: ESTATE, msg: "Donation is " + string(s) + ", not processing."})
	}
	runTransitions(t, tests)
}

func TestApplySweep(t *testing.T) {
	// sweepWindow ends at t0+3s.
	first, second := t0.Add(10*time.Second), t0.Add(14*time.Second)
	sweep := func(seen SweptOrder, start SweepStart) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplySweep(d, seen, start, t1) }
	}
	runTransitions(t, []transitionCase{{
		name:   "the first sweep is counted, at the latest it can have started",
		before: unknownIn(sweepWindow, 0, nil),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 0, Sweeps: 0}, SweepStart{Earliest: first.Add(-time.Second), Latest: first}),
		want: func(d *PaymentOrder) {
			d.Sweeps, d.SweptAt, d.UpdatedAt = 1, timeAt(first), t1
		},
		changed: []OrderField{FieldSweeps, FieldSweptAt, FieldUpdatedAt},
	}, {
		name:   "a sweep starting exactly a second after the window is counted",
		before: unknownIn(sweepWindow, 0, nil),
		decide: sweep(SweptOrder{ID: "po_1"}, SweepStartAt(sweepWindow.To.Add(time.Second))),
		want: func(d *PaymentOrder) {
			d.Sweeps, d.SweptAt, d.UpdatedAt = 1, timeAt(sweepWindow.To.Add(time.Second)), t1
		},
		changed: []OrderField{FieldSweeps, FieldSweptAt, FieldUpdatedAt},
	}, {
		name:   "the second sweep is counted",
		before: unknownIn(sweepWindow, 1, timeAt(first)),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 0, Sweeps: 1}, SweepStartAt(second)),
		want: func(d *PaymentOrder) {
			d.Sweeps, d.SweptAt, d.UpdatedAt = 2, timeAt(second), t1
		},
		changed: []OrderField{FieldSweeps, FieldSweptAt, FieldUpdatedAt},
	}, {
		name:   "refused: a sweep that may have started within a second of the window's end",
		before: unknownIn(sweepWindow, 0, nil),
		decide: sweep(SweptOrder{ID: "po_1"}, SweepStart{Earliest: sweepWindow.To.Add(999 * time.Millisecond), Latest: first}),
		code:   ESTATE,
	}, {
		name:   "refused: a second sweep that may have started within SweepGap of the first",
		before: unknownIn(sweepWindow, 1, timeAt(first)),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 0, Sweeps: 1}, SweepStart{Earliest: first.Add(SweepGap - time.Millisecond), Latest: second}),
		code:   ESTATE,
	}, {
		name:   "refused: another sweep was recorded first",
		before: unknownIn(sweepWindow, 1, timeAt(first)),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 0, Sweeps: 0}, SweepStartAt(second)),
		code:   ESTATE, msg: "Donation has 1 sweeps recorded, not 0.",
	}, {
		name:   "refused: a sweep that started no later than the last one",
		before: unknownIn(sweepWindow, 1, timeAt(first)),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 0, Sweeps: 1}, SweepStartAt(first)),
		code:   ESTATE,
	}, {
		name:   "refused: a new key since",
		before: unknownIn(sweepWindow, 0, nil),
		decide: sweep(SweptOrder{ID: "po_1", Attempt: 1, Sweeps: 0}, SweepStartAt(first)),
		code:   ESTATE, msg: "Donation is processing at key generation 0, not processing at 1.",
	}, {
		name:   "refused: no unknown outcome (claimed again, or never unknown)",
		before: orderIn(StatusProcessing),
		decide: sweep(SweptOrder{ID: "po_1"}, SweepStartAt(first)),
		code:   ESTATE, msg: "Donation has no unknown outcome.",
	}, {
		name:   "refused: settled meanwhile (a webhook)",
		before: orderIn(StatusSucceeded),
		decide: sweep(SweptOrder{ID: "po_1"}, SweepStartAt(first)),
		code:   ESTATE, msg: "Donation is succeeded at key generation 0, not processing at 0.",
	}})
}

func TestApplySweptNewKey(t *testing.T) {
	first, second := t0.Add(10*time.Second), t0.Add(14*time.Second)
	// The store's clock an hour behind the caller's: the lease ends on the
	// store's, so the order is claimable at once whatever the caller's
	// clock says.
	store := t1.Add(-time.Hour)
	newKey := func(from int, pi string) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplySweptNewKey(d, from, pi, t1, store) }
	}
	back := func(d *PaymentOrder) {
		d.Attempt, d.KeySince = 1, nil
		d.UnknownFrom, d.UnknownTo, d.Sweeps, d.SweptAt, d.UnknownCause = nil, nil, 0, nil, ""
		d.LeaseUntil, d.UpdatedAt = timeAt(store), t1
	}
	absent := func(d *PaymentOrder) {
		back(d)
		d.Absences++
	}
	idempotency := func(absences int) func(*PaymentOrder) {
		return func(d *PaymentOrder) { d.UnknownCause, d.Absences = "idempotency", absences }
	}
	runTransitions(t, []transitionCase{{
		name:   "two sweeps found nothing: a new key, back in line at once",
		before: unknownIn(sweepWindow, 2, timeAt(second)),
		decide: newKey(0, ""),
		want:   absent,
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldLeaseUntil,
			FieldUnknownFrom, FieldUnknownTo, FieldSweeps, FieldSweptAt, FieldUnknownCause, FieldAbsences, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0 (2 sweeps of [2026-12-04T19:59:58Z, 2026-12-04T20:00:03Z] found none)"},
	}, {
		name:   "a PaymentIntent found awaiting its confirmation: confirmed under a new key",
		before: unknownIn(sweepWindow, 0, nil),
		decide: newKey(0, "pi_9"),
		want: func(d *PaymentOrder) {
			back(d)
			d.PaymentIntentID = "pi_9"
		},
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldPaymentIntentID, FieldLeaseUntil,
			FieldUnknownFrom, FieldUnknownTo, FieldUnknownCause, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1, Note: "new idempotency key (generation 1) to confirm pi_9"},
	}, {
		name:   "against a failing provider, keys are renewed however many were",
		before: unknownIn(sweepWindow, 2, timeAt(second), func(d *PaymentOrder) { d.Absences = 10 }),
		decide: newKey(0, ""),
		want:   absent,
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldLeaseUntil,
			FieldUnknownFrom, FieldUnknownTo, FieldSweeps, FieldSweptAt, FieldUnknownCause, FieldAbsences, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0 (2 sweeps of [2026-12-04T19:59:58Z, 2026-12-04T20:00:03Z] found none)"},
	}, {
		name:   "an outcome hidden otherwise: a new key below MaxAbsences",
		before: unknownIn(sweepWindow, 2, timeAt(second), idempotency(MaxAbsences-2)),
		decide: newKey(0, ""),
		want:   absent,
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldLeaseUntil,
			FieldUnknownFrom, FieldUnknownTo, FieldSweeps, FieldSweptAt, FieldUnknownCause, FieldAbsences, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0 (2 sweeps of [2026-12-04T19:59:58Z, 2026-12-04T20:00:03Z] found none)"},
	}, {
		name:   "an outcome hidden otherwise, MaxAbsences times: the order fails, safely",
		before: unknownIn(sweepWindow, 2, timeAt(second), idempotency(MaxAbsences-1)),
		decide: newKey(0, ""),
		want: func(d *PaymentOrder) {
			d.Status, d.FailureCode = StatusFailed, "processing_error"
			d.UnknownFrom, d.UnknownTo, d.Sweeps, d.SweptAt, d.UnknownCause = nil, nil, 0, nil, ""
			d.UpdatedAt = t1
		},
		changed: []OrderField{FieldStatus, FieldFailureCode, FieldUnknownFrom, FieldUnknownTo, FieldSweeps, FieldSweptAt,
			FieldUnknownCause, FieldUpdatedAt},
		history: &StatusChange{Status: StatusFailed, At: t1, FailureCode: "processing_error",
			Note: "no payment after 3 unknown outcomes (idempotency) that sweeps found none for"},
		delta: TotalsDelta{Pending: -2500, PendingCount: -1},
	}, {
		name:   "refused: one sweep does not prove absence",
		before: unknownIn(sweepWindow, 1, timeAt(first)),
		decide: newKey(0, ""),
		code:   ESTATE, msg: "Donation has 1 of the 2 sweeps that prove no payment exists.",
	}, {
		name:   "refused: moved on already",
		before: unknownIn(sweepWindow, 2, timeAt(second)),
		decide: newKey(1, ""),
		code:   ESTATE,
	}, {
		name:   "refused: not unknown",
		before: orderIn(StatusProcessing),
		decide: newKey(0, ""),
		code:   ESTATE, msg: "Donation has no unknown outcome.",
	}, {
		name:   "refused: settled by a webhook meanwhile",
		before: orderIn(StatusFailed),
		decide: newKey(0, ""),
		code:   ESTATE,
	}})
}

// TestSettlementEndsAnUnknownOutcome: a settlement from elsewhere (a
// webhook, a sweep that found the payment) settles an unknown order and
// forgets its sweeps; a worker's late settlement under its old claim does
// not.
func TestSettlementEndsAnUnknownOutcome(t *testing.T) {
	o := unknownIn(sweepWindow, 1, timeAt(t0.Add(10*time.Second)))
	tr, err := ApplySettlement(o, Settlement{OrderID: o.ID, Status: StatusSucceeded, PaymentIntentID: "pi_2", At: t1}, t1)
	if err != nil || tr.Order.UnknownFrom != nil || tr.Order.UnknownTo != nil || tr.Order.Sweeps != 0 || tr.Order.SweptAt != nil ||
		tr.Order.Status != StatusSucceeded || tr.Effect.Zero() {
		t.Fatalf("settled = %+v, %v", tr.Order, err)
	}
	if _, err := ApplySettlement(o, Settlement{OrderID: o.ID, Status: StatusFailed, Token: 5, At: t1}, t1); ErrorCode(err) != ESTATE {
		t.Fatalf("a worker's settlement under the claim that handed the order to the sweeps: %v", err)
	}
}
