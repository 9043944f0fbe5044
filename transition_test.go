package floodgate

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"
)

var (
	t0 = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Minute)
)

func timeAt(t time.Time) *time.Time { return &t }

// orderIn returns the order of a 25.00 gift as it stands in status s
// after the usual path there: claimed from the line (fencing token 5),
// sent, answered by the provider.
func orderIn(s DonationStatus, edits ...func(*PaymentOrder)) *PaymentOrder {
	d := &PaymentOrder{ID: "po_1", Seq: 7, Kind: KindDonation, PaysFor: "don_1", CampaignID: "c",
		Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa", ClientAddr: "192.0.2.1",
		Status: s, Format: CurrentFormat, CreatedAt: t0, UpdatedAt: t0}
	if s != StatusAccepted {
		d.KeySince, d.Token = timeAt(t0), 5
	}
	switch s {
	case StatusProcessing:
		d.ClaimedBy, d.LeaseUntil = "d1", timeAt(t0.Add(time.Hour))
	case StatusRequiresAction:
		d.PaymentIntentID, d.ClientSecret = "pi_1", "pi_1_secret"
		d.NextAction, d.ActionSince = json.RawMessage(`{"type":"use_stripe_sdk"}`), timeAt(t0)
	case StatusFailed:
		d.PaymentIntentID, d.FailureCode = "pi_1", "card_declined"
	case StatusSucceeded:
		d.PaymentIntentID = "pi_1"
	}
	for _, e := range edits {
		e(d)
	}
	return d
}

// snapshot is a deep copy of d, to prove a decision left its input alone.
func snapshot(d *PaymentOrder) *PaymentOrder {
	c := *d
	c.NextAction = slices.Clone(d.NextAction)
	return &c
}

// fixedPart is d with every field a change may write zeroed: what no
// transition may change.
func fixedPart(d *PaymentOrder) PaymentOrder {
	c := *d
	c.Status, c.PaymentMethod, c.Attempt, c.KeySince, c.Format = "", "", 0, nil, 0
	c.PaymentIntentID, c.ClientSecret, c.NextAction, c.FailureCode = "", "", nil, ""
	c.ActionSince, c.ClaimedBy, c.LeaseUntil = nil, "", nil
	c.Refunded, c.Disputed, c.UpdatedAt = 0, 0, time.Time{}
	c.UnknownFrom, c.UnknownTo, c.Sweeps, c.SweptAt, c.UnknownCause, c.Absences = nil, nil, 0, nil, "", 0
	return c
}

// transitionCase is one row of a decision's table: the order before, and
// either the refusal (code and message) or the transition expected.
type transitionCase struct {
	name   string
	before *PaymentOrder
	decide func(*PaymentOrder) (Transition, error)
	// want edits a copy of before into the order expected after.
	want    func(*PaymentOrder)
	changed []OrderField
	history *StatusChange
	// delta is what the campaign's totals gain.
	delta TotalsDelta
	// code and msg, when set, are the refusal expected.
	code, msg string
}

func runTransitions(t *testing.T, tests []transitionCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(tt.before)
			got, err := tt.decide(tt.before)
			if !reflect.DeepEqual(tt.before, before) {
				t.Fatalf("the decision changed its input:\n%+v\nwas\n%+v", tt.before, before)
			}
			if tt.code != "" {
				if ErrorCode(err) != tt.code || (tt.msg != "" && ErrorMessage(err) != tt.msg) {
					t.Fatalf("err = %v, want %s %q", err, tt.code, tt.msg)
				}
				if got.Order != nil || got.History != nil || !got.Effect.Zero() || got.Changed != nil {
					t.Fatalf("a refusal came with a transition: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			want := snapshot(tt.before)
			tt.want(want)
			if !reflect.DeepEqual(got.Order, want) {
				t.Fatalf("order after =\n%+v\nwant\n%+v", got.Order, want)
			}
			if !reflect.DeepEqual(fixedPart(got.Order), fixedPart(before)) {
				t.Fatalf("a field fixed when the order was made changed:\n%+v\nwas\n%+v", got.Order, before)
			}
			if !slices.Equal(got.Changed, tt.changed) {
				t.Fatalf("changed = %v, want %v", got.Changed, tt.changed)
			}
			if !reflect.DeepEqual(got.History, tt.history) {
				t.Fatalf("history = %+v, want %+v", got.History, tt.history)
			}
			if got.Effect != (Effect{Campaign: "c", Totals: tt.delta}) {
				t.Fatalf("effect = %+v, want %+v on campaign c", got.Effect, tt.delta)
			}
			if !got.At.Equal(got.Order.UpdatedAt) {
				t.Fatalf("at = %v, but the order was updated at %v", got.At, got.Order.UpdatedAt)
			}
		})
	}
}

func settle(s Settlement) func(*PaymentOrder) (Transition, error) {
	return func(d *PaymentOrder) (Transition, error) { return ApplySettlement(d, s, t1) }
}

func TestApplySettlement(t *testing.T) {
	next := json.RawMessage(`{"type":"redirect_to_url"}`)
	settled := func(edit func(*PaymentOrder)) func(*PaymentOrder) {
		return func(d *PaymentOrder) {
			d.ClaimedBy, d.LeaseUntil, d.UpdatedAt = "", nil, t1
			edit(d)
		}
	}
	claimCleared := []OrderField{FieldClaimedBy, FieldLeaseUntil, FieldUpdatedAt}
	runTransitions(t, []transitionCase{{
		name:   "charged: the PaymentIntent recorded, the claim cleared, pending becomes raised",
		before: orderIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", ClientSecret: "pi_1_secret", At: t1}),
		want: settled(func(d *PaymentOrder) {
			d.Status, d.PaymentIntentID, d.ClientSecret = StatusSucceeded, "pi_1", "pi_1_secret"
		}),
		changed: append([]OrderField{FieldStatus, FieldPaymentIntentID, FieldClientSecret}, claimCleared...),
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "declined: the failure code recorded and in the history",
		before: orderIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusFailed, PaymentIntentID: "pi_1", FailureCode: "card_declined", At: t1}),
		want: settled(func(d *PaymentOrder) {
			d.Status, d.PaymentIntentID, d.FailureCode = StatusFailed, "pi_1", "card_declined"
		}),
		changed: append([]OrderField{FieldStatus, FieldPaymentIntentID, FieldFailureCode}, claimCleared...),
		history: &StatusChange{Status: StatusFailed, At: t1, FailureCode: "card_declined"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1},
	}, {
		name:   "3-D Secure: next_action kept, action_since stamped, still pending",
		before: orderIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusRequiresAction, PaymentIntentID: "pi_1", ClientSecret: "pi_1_secret", NextAction: next, At: t1}),
		want: settled(func(d *PaymentOrder) {
			d.Status, d.PaymentIntentID, d.ClientSecret = StatusRequiresAction, "pi_1", "pi_1_secret"
			d.NextAction, d.ActionSince = next, timeAt(t1)
		}),
		changed: []OrderField{FieldStatus, FieldPaymentIntentID, FieldClientSecret, FieldNextAction, FieldActionSince,
			FieldClaimedBy, FieldLeaseUntil, FieldUpdatedAt},
		history: &StatusChange{Status: StatusRequiresAction, At: t1},
	}, {
		name:   "authenticated: a settlement naming no PaymentIntent keeps the recorded one, next_action goes, action_since stays",
		before: orderIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusSucceeded, At: t1}),
		want: func(d *PaymentOrder) {
			d.Status, d.NextAction, d.UpdatedAt = StatusSucceeded, nil, t1
		},
		changed: []OrderField{FieldStatus, FieldNextAction, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "action timeout: canceled with its note",
		before: orderIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusCanceled, Note: "action timeout", At: t1}),
		want: func(d *PaymentOrder) {
			d.Status, d.NextAction, d.UpdatedAt = StatusCanceled, nil, t1
		},
		changed: []OrderField{FieldStatus, FieldNextAction, FieldUpdatedAt},
		history: &StatusChange{Status: StatusCanceled, At: t1, Note: "action timeout"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1},
	}, {
		name:   "a success reported after a failure is recorded, and the failure code goes",
		before: orderIn(StatusFailed),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", At: t1}),
		want: func(d *PaymentOrder) {
			d.Status, d.FailureCode, d.UpdatedAt = StatusSucceeded, "", t1
		},
		changed: []OrderField{FieldStatus, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1},
	}, {
		name:   "a success after a local cancel is recorded: money that moved is counted",
		before: orderIn(StatusCanceled),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_9", At: t1}),
		want: func(d *PaymentOrder) {
			d.Status, d.PaymentIntentID, d.UpdatedAt = StatusSucceeded, "pi_9", t1
		},
		changed: []OrderField{FieldStatus, FieldPaymentIntentID, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1},
	}, {
		name: "a success after an early refund brings in only what is left",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) {
			d.Refunded = 1000
		}),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", At: t1}),
		want: settled(func(d *PaymentOrder) {
			d.Status, d.PaymentIntentID = StatusSucceeded, "pi_1"
		}),
		changed: append([]OrderField{FieldStatus, FieldPaymentIntentID}, claimCleared...),
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 1500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "given back to the line: waiting again, still pending",
		before: orderIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusAccepted, Note: "lease given up", At: t1}),
		want: settled(func(d *PaymentOrder) {
			d.Status = StatusAccepted
		}),
		changed: append([]OrderField{FieldStatus}, claimCleared...),
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "lease given up"},
		delta:   TotalsDelta{Waiting: 1},
	}, {
		name:   "refused: a late payment_failed never overwrites succeeded",
		before: orderIn(StatusSucceeded),
		decide: settle(Settlement{Status: StatusFailed, FailureCode: "card_declined", At: t1}),
		code:   ESTATE, msg: "Donation cannot move from succeeded to failed.",
	}, {
		name:   "refused: nothing leaves succeeded, not even to succeeded again",
		before: orderIn(StatusSucceeded),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_2", At: t1}),
		code:   ESTATE, msg: "Donation cannot move from succeeded to succeeded.",
	}, {
		name:   "refused: a gift still in line was never charged",
		before: orderIn(StatusAccepted),
		decide: settle(Settlement{Status: StatusSucceeded, At: t1}),
		code:   ESTATE, msg: "Donation cannot move from accepted to succeeded.",
	}, {
		name:   "refused: From restricts the statuses it applies in",
		before: orderIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusFailed, From: []DonationStatus{StatusProcessing}, At: t1}),
		code:   ESTATE, msg: "Donation is requires_action.",
	}})
}

func TestApplyCancel(t *testing.T) {
	cancel := func(d *PaymentOrder) (Transition, error) { return ApplyCancel(d, t1) }
	runTransitions(t, []transitionCase{{
		name:    "a gift still in line leaves it",
		before:  orderIn(StatusAccepted),
		decide:  cancel,
		want:    func(d *PaymentOrder) { d.Status, d.UpdatedAt = StatusCanceled, t1 },
		changed: []OrderField{FieldStatus, FieldUpdatedAt},
		history: &StatusChange{Status: StatusCanceled, At: t1, Note: "canceled by the donor"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1, Waiting: -1},
	}, {
		name: "refused once claimed: a charge may be under way", before: orderIn(StatusProcessing), decide: cancel,
		code: ESTATE, msg: "Donation is processing.",
	}, {
		name: "refused while the bank asks for 3-D Secure", before: orderIn(StatusRequiresAction), decide: cancel,
		code: ESTATE, msg: "Donation is requires_action.",
	}, {
		name: "refused when charged", before: orderIn(StatusSucceeded), decide: cancel,
		code: ESTATE, msg: "Donation is succeeded.",
	}, {
		name: "refused when failed", before: orderIn(StatusFailed), decide: cancel,
		code: ESTATE, msg: "Donation is failed.",
	}, {
		name: "refused twice", before: orderIn(StatusCanceled), decide: cancel,
		code: ESTATE, msg: "Donation is canceled.",
	}})
}

func TestApplyPaymentMethod(t *testing.T) {
	replace := func(d *PaymentOrder) (Transition, error) { return ApplyPaymentMethod(d, "pm_card_mastercard", t1) }
	tests := []transitionCase{{
		name:   "a failed gift goes back in line at its old place with the next key, not yet sent",
		before: orderIn(StatusFailed),
		decide: replace,
		want: func(d *PaymentOrder) {
			d.Status, d.PaymentMethod, d.Attempt, d.KeySince = StatusAccepted, "pm_card_mastercard", 1, nil
			d.FailureCode, d.UpdatedAt = "", t1
		},
		changed: []OrderField{FieldStatus, FieldPaymentMethod, FieldAttempt, FieldKeySince, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "new payment method"},
		delta:   TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1},
	}, {
		name: "a failed 3-D Secure attempt: its next_action goes, its PaymentIntent stays",
		before: orderIn(StatusFailed, func(d *PaymentOrder) {
			d.Attempt, d.ClientSecret, d.NextAction = 2, "pi_1_secret", json.RawMessage(`{}`)
		}),
		decide: replace,
		want: func(d *PaymentOrder) {
			d.Status, d.PaymentMethod, d.Attempt, d.KeySince = StatusAccepted, "pm_card_mastercard", 3, nil
			d.FailureCode, d.NextAction, d.UpdatedAt = "", nil, t1
		},
		changed: []OrderField{FieldStatus, FieldPaymentMethod, FieldAttempt, FieldKeySince, FieldNextAction, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "new payment method"},
		delta:   TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1},
	}, {
		name: "a gift that failed after unknown outcomes no sweep found a payment for: the count starts again",
		before: orderIn(StatusFailed, func(d *PaymentOrder) {
			d.Attempt, d.Absences, d.FailureCode = 3, MaxAbsences, "processing_error"
		}),
		decide: replace,
		want: func(d *PaymentOrder) {
			d.Status, d.PaymentMethod, d.Attempt, d.KeySince, d.Absences = StatusAccepted, "pm_card_mastercard", 4, nil, 0
			d.FailureCode, d.UpdatedAt = "", t1
		},
		changed: []OrderField{FieldStatus, FieldPaymentMethod, FieldAttempt, FieldKeySince, FieldFailureCode, FieldAbsences, FieldUpdatedAt},
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "new payment method"},
		delta:   TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1},
	}}
	for _, s := range []DonationStatus{StatusAccepted, StatusProcessing, StatusRequiresAction, StatusSucceeded, StatusCanceled} {
		tests = append(tests, transitionCase{name: "refused when " + string(s), before: orderIn(s), decide: replace,
			code: ESTATE, msg: "Only a failed donation takes another payment method; this one is " + string(s) + "."})
	}
	runTransitions(t, tests)
}

func TestApplyNewKeyGeneration(t *testing.T) {
	newKey := func(token int64, from int, pi string) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplyNewKeyGeneration(d, token, from, pi, t1, t1) }
	}
	runTransitions(t, []transitionCase{{
		name:    "no payment exists for the key: the next generation, first sent now, still claimed",
		before:  orderIn(StatusProcessing),
		decide:  newKey(5, 0, ""),
		want:    func(d *PaymentOrder) { d.Attempt, d.KeySince, d.UpdatedAt = 1, timeAt(t1), t1 },
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0"},
	}, {
		name:   "a PaymentIntent awaiting confirmation is recorded",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.Attempt = 1 }),
		decide: newKey(5, 1, "pi_found"),
		want: func(d *PaymentOrder) {
			d.Attempt, d.KeySince, d.PaymentIntentID, d.UpdatedAt = 2, timeAt(t1), "pi_found", t1
		},
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldPaymentIntentID, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1, Note: "new idempotency key (generation 2) to confirm pi_found"},
	}, {
		name:    "none found: the PaymentIntent recorded before stays",
		before:  orderIn(StatusProcessing, func(d *PaymentOrder) { d.PaymentIntentID = "pi_old" }),
		decide:  newKey(5, 0, ""),
		want:    func(d *PaymentOrder) { d.Attempt, d.KeySince, d.UpdatedAt = 1, timeAt(t1), t1 },
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0"},
	}, {
		name:   "a generation begun before payment orders: the next one takes the current request format",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.Format = FormatDonation }),
		decide: newKey(5, 0, ""),
		want: func(d *PaymentOrder) {
			d.Attempt, d.KeySince, d.Format, d.UpdatedAt = 1, timeAt(t1), CurrentFormat, t1
		},
		changed: []OrderField{FieldAttempt, FieldKeySince, FieldFormat, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0"},
	}, {
		name:   "refused: a second caller that saw the same generation loses",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.Attempt = 1 }),
		decide: newKey(5, 0, ""),
		code:   ESTATE, msg: "Donation is processing at key generation 1, not processing at 0.",
	}, {
		name:   "refused: a claim taken over since (another token) moves nothing on",
		before: orderIn(StatusProcessing),
		decide: newKey(4, 0, ""),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 4.",
	}, {
		name:   "refused: a deferred order is nobody's",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.ClaimedBy = "" }),
		decide: newKey(5, 0, ""),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: the lease ran out on the store's clock",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.LeaseUntil = timeAt(t1) }),
		decide: newKey(5, 0, ""),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: not yet claimed",
		before: orderIn(StatusAccepted),
		decide: newKey(5, 0, ""),
		code:   ESTATE, msg: "Donation is accepted at key generation 0, not processing at 0.",
	}, {
		name:   "refused: settled meanwhile",
		before: orderIn(StatusRequiresAction),
		decide: newKey(5, 0, ""),
		code:   ESTATE, msg: "Donation is requires_action at key generation 0, not processing at 0.",
	}})
}

func TestApplyDefer(t *testing.T) {
	later := t1.Add(time.Minute)
	deferTo := func(token int64) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplyDefer(d, token, later, t1) }
	}
	tests := []transitionCase{{
		name:   "the claim is given up until later: status, key and the rest stay",
		before: orderIn(StatusProcessing),
		decide: deferTo(5),
		want: func(d *PaymentOrder) {
			d.ClaimedBy, d.LeaseUntil = "", timeAt(later)
		},
		changed: []OrderField{FieldClaimedBy, FieldLeaseUntil},
	}, {
		name:   "refused: a claim taken over since",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.Token = 6 }),
		decide: deferTo(5),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: deferred already",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.ClaimedBy = "" }),
		decide: deferTo(5),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}, {
		name:   "refused: the lease ran out",
		before: orderIn(StatusProcessing, func(d *PaymentOrder) { d.LeaseUntil = timeAt(t0) }),
		decide: deferTo(5),
		code:   ESTATE, msg: "Donation is no longer held by the claim with fencing token 5.",
	}}
	for _, s := range []DonationStatus{StatusAccepted, StatusRequiresAction, StatusSucceeded, StatusFailed, StatusCanceled} {
		tests = append(tests, transitionCase{name: "refused when " + string(s), before: orderIn(s), decide: deferTo(5),
			code: ESTATE, msg: "Donation is " + string(s) + ", not processing."})
	}
	for _, tt := range tests {
		if tt.code == "" {
			// A defer stamps nothing: the order's UpdatedAt stays, and so
			// At is not the order's; check the rest by hand.
			got, err := tt.decide(tt.before)
			want := snapshot(tt.before)
			tt.want(want)
			if err != nil || !reflect.DeepEqual(got.Order, want) || !slices.Equal(got.Changed, tt.changed) ||
				got.History != nil || !got.Effect.Zero() {
				t.Fatalf("%s: %+v, %v", tt.name, got, err)
			}
			continue
		}
		runTransitions(t, []transitionCase{tt})
	}
}

// TestStaleSettlement: a result reported under a claim that no longer
// holds the order is never applied; it is kept as a history line, which
// the refusal carries alone. A result the order could not take anyway
// (it moved on, a webhook got there first) is refused without a line.
func TestStaleSettlement(t *testing.T) {
	ok := Settlement{Token: 5, Status: StatusSucceeded, PaymentIntentID: "pi_1", At: t1}
	for _, tt := range []struct {
		name   string
		before *PaymentOrder
		s      Settlement
		note   string
	}{
		{"taken over by another claim", orderIn(StatusProcessing, func(d *PaymentOrder) { d.Token, d.ClaimedBy = 6, "d2" }), ok,
			"late result from a claim no longer held (fencing token 5): succeeded (pi_1); not applied"},
		{"the lease ran out", orderIn(StatusProcessing, func(d *PaymentOrder) { d.LeaseUntil = timeAt(t0) }), ok,
			"late result from a claim no longer held (fencing token 5): succeeded (pi_1); not applied"},
		{"released at a clean shutdown", orderIn(StatusProcessing, func(d *PaymentOrder) { d.LeaseUntil = timeAt(time.Unix(0, 0)) }),
			Settlement{Token: 5, Status: StatusFailed, FailureCode: "card_declined", At: t1},
			"late result from a claim no longer held (fencing token 5): failed; not applied"},
		{"the failed attempt's order is back in line with another card", orderIn(StatusAccepted, func(d *PaymentOrder) { d.Token = 5 }),
			Settlement{Token: 5, Status: StatusCanceled, At: t1},
			"late result from a claim no longer held (fencing token 5): canceled; not applied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := snapshot(tt.before)
			got, err := ApplySettlement(tt.before, tt.s, t1)
			if ErrorCode(err) != ESTATE || ErrorMessage(err) != "Donation is no longer held by the claim with fencing token 5." {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(tt.before, before) {
				t.Fatal("the decision changed its input")
			}
			want := &StatusChange{Status: tt.before.Status, At: t1, FailureCode: tt.s.FailureCode, Note: tt.note}
			if got.Order != nil || got.Changed != nil || !got.Effect.Zero() || !reflect.DeepEqual(got.History, want) || !got.At.Equal(t1) {
				t.Fatalf("transition = %+v (history %+v), want the history line %+v alone", got, got.History, want)
			}
		})
	}
	// Held: the same settlement applies.
	if got, err := ApplySettlement(orderIn(StatusProcessing), ok, t1); err != nil || got.Order.Status != StatusSucceeded {
		t.Fatalf("held claim: %+v, %v", got, err)
	}
	// Moved on already: refused for that reason, no line.
	got, err := ApplySettlement(orderIn(StatusSucceeded), ok, t1)
	if ErrorMessage(err) != "Donation cannot move from succeeded to succeeded." || got.History != nil {
		t.Fatalf("settled meanwhile: %+v, %v", got, err)
	}
}

func TestHeld(t *testing.T) {
	o := orderIn(StatusProcessing) // token 5, lease until t0+1h
	for _, tt := range []struct {
		name  string
		token int64
		now   time.Time
		edit  func(*PaymentOrder)
		want  bool
	}{
		{"its claim, within the lease", 5, t1, nil, true},
		{"no token", 0, t1, nil, false},
		{"another claim's token", 4, t1, nil, false},
		{"the lease's last instant has passed", 5, t0.Add(time.Hour), nil, false},
		{"given up (deferred)", 5, t1, func(o *PaymentOrder) { o.ClaimedBy = "" }, false},
		{"settled", 5, t1, func(o *PaymentOrder) { o.ClaimedBy, o.LeaseUntil = "", nil }, false},
	} {
		c := snapshot(o)
		if tt.edit != nil {
			tt.edit(c)
		}
		if got := c.Held(tt.token, tt.now); got != tt.want {
			t.Errorf("%s: Held = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestApplyReversal(t *testing.T) {
	reverse := func(kind Reversal, total int64) func(*PaymentOrder) (Transition, error) {
		return func(d *PaymentOrder) (Transition, error) { return ApplyReversal(d, kind, total, t1) }
	}
	taken := func(refunded, disputed int64) func(*PaymentOrder) {
		return func(d *PaymentOrder) {
			d.Status = StatusSucceeded
			d.Refunded, d.Disputed = refunded, disputed
		}
	}
	line := func(note string) *StatusChange { return &StatusChange{Status: StatusSucceeded, At: t1, Note: note} }
	runTransitions(t, []transitionCase{{
		name:    "partial refund",
		before:  orderIn(StatusSucceeded),
		decide:  reverse(ReversalRefund, 1000),
		want:    func(d *PaymentOrder) { d.Refunded, d.UpdatedAt = 1000, t1 },
		changed: []OrderField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 1000 in all"),
		delta:   TotalsDelta{Raised: -1000},
	}, {
		name:    "a refund reported as a cumulative total grows by the difference",
		before:  orderIn(StatusSucceeded, taken(1000, 0)),
		decide:  reverse(ReversalRefund, 2500),
		want:    func(d *PaymentOrder) { d.Refunded, d.UpdatedAt = 2500, t1 },
		changed: []OrderField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 2500 in all"),
		delta:   TotalsDelta{Raised: -1500},
	}, {
		name:    "dispute",
		before:  orderIn(StatusSucceeded),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *PaymentOrder) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []OrderField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
		delta:   TotalsDelta{Raised: -2500},
	}, {
		name:    "a dispute after a partial refund takes off only what was left",
		before:  orderIn(StatusSucceeded, taken(1000, 0)),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *PaymentOrder) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []OrderField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
		delta:   TotalsDelta{Raised: -1500},
	}, {
		name:    "never more than the gift's amount in all",
		before:  orderIn(StatusSucceeded, taken(2500, 0)),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *PaymentOrder) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []OrderField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
	}, {
		name:    "a report beyond the amount is recorded as reported, raised goes down by the amount only",
		before:  orderIn(StatusSucceeded),
		decide:  reverse(ReversalRefund, 3000),
		want:    func(d *PaymentOrder) { d.Refunded, d.UpdatedAt = 3000, t1 },
		changed: []OrderField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 3000 in all"),
		delta:   TotalsDelta{Raised: -2500},
	}, {
		name:    "before the success it reverses: recorded, raised untouched until then",
		before:  orderIn(StatusRequiresAction),
		decide:  reverse(ReversalRefund, 1000),
		want:    func(d *PaymentOrder) { d.Refunded, d.UpdatedAt = 1000, t1 },
		changed: []OrderField{FieldRefunded, FieldUpdatedAt},
		history: &StatusChange{Status: StatusRequiresAction, At: t1, Note: "refund: 1000 in all"},
	}, {
		name:   "refused: a replayed report changes nothing",
		before: orderIn(StatusSucceeded, taken(2500, 0)),
		decide: reverse(ReversalRefund, 2500),
		code:   ESTATE, msg: "Already recorded.",
	}, {
		name:   "refused: an older report arriving late changes nothing",
		before: orderIn(StatusSucceeded, taken(2500, 0)),
		decide: reverse(ReversalRefund, 1000),
		code:   ESTATE, msg: "Already recorded.",
	}, {
		name:   "refused: an unknown kind",
		before: orderIn(StatusSucceeded),
		decide: reverse("chargeback", 1000),
		code:   EINVALID, msg: `Unknown reversal "chargeback".`,
	}})
}

func TestReplay(t *testing.T) {
	prev := &Donation{ID: "don_1", CampaignID: "c", IdempotencyKey: "key-1", RequestHash: []byte("hash-1"), Amount: 2500,
		OrderID: "po_1", Status: StatusSucceeded}
	same := &Donation{CampaignID: "c", IdempotencyKey: "key-1", RequestHash: []byte("hash-1"), Amount: 2500}
	res := Replay(prev, same)
	if res.Err != nil || !res.Replayed || !reflect.DeepEqual(res.Donation(), prev) {
		t.Fatalf("same request = %+v, want the kept donation, replayed", res)
	}
	if res.Donation() == prev {
		t.Fatal("the kept donation was handed out, not a copy: two answers would share it")
	}
	other := &Donation{CampaignID: "c", IdempotencyKey: "key-1", RequestHash: []byte("hash-2"), Amount: 5000}
	res = Replay(prev, other)
	if ErrorCode(res.Err) != EIDEMMISMATCH || ErrorMessage(res.Err) != "This Idempotency-Key was already used with a different request." ||
		res.Intake != nil || res.Replayed {
		t.Fatalf("another request = %+v, want %s alone", res, EIDEMMISMATCH)
	}
}

// TestChangedFields holds Transition.Changed to the fields it names: each
// field a state change may write is seen to change on its own, and a value
// read back in another form (a time in another zone, no next_action as
// empty bytes) is no change.
func TestChangedFields(t *testing.T) {
	edit := map[OrderField]func(*PaymentOrder){
		FieldStatus:          func(d *PaymentOrder) { d.Status = StatusFailed },
		FieldPaymentMethod:   func(d *PaymentOrder) { d.PaymentMethod = "pm_other" },
		FieldAttempt:         func(d *PaymentOrder) { d.Attempt++ },
		FieldKeySince:        func(d *PaymentOrder) { d.KeySince = nil },
		FieldFormat:          func(d *PaymentOrder) { d.Format = FormatDonation },
		FieldPaymentIntentID: func(d *PaymentOrder) { d.PaymentIntentID = "pi_other" },
		FieldClientSecret:    func(d *PaymentOrder) { d.ClientSecret = "other_secret" },
		FieldNextAction:      func(d *PaymentOrder) { d.NextAction = json.RawMessage(`{"type":"other"}`) },
		FieldFailureCode:     func(d *PaymentOrder) { d.FailureCode = "expired_card" },
		FieldActionSince:     func(d *PaymentOrder) { d.ActionSince = timeAt(t1) },
		FieldClaimedBy:       func(d *PaymentOrder) { d.ClaimedBy = "d2" },
		FieldLeaseUntil:      func(d *PaymentOrder) { d.LeaseUntil = timeAt(t1) },
		FieldRefunded:        func(d *PaymentOrder) { d.Refunded = 1 },
		FieldDisputed:        func(d *PaymentOrder) { d.Disputed = 1 },
		FieldUnknownFrom:     func(d *PaymentOrder) { d.UnknownFrom = timeAt(t0) },
		FieldUnknownTo:       func(d *PaymentOrder) { d.UnknownTo = timeAt(t1) },
		FieldSweeps:          func(d *PaymentOrder) { d.Sweeps = 1 },
		FieldSweptAt:         func(d *PaymentOrder) { d.SweptAt = timeAt(t1) },
		FieldUnknownCause:    func(d *PaymentOrder) { d.UnknownCause = "idempotency" },
		FieldAbsences:        func(d *PaymentOrder) { d.Absences = 1 },
		FieldUpdatedAt:       func(d *PaymentOrder) { d.UpdatedAt = t1 },
	}
	if len(edit) != len(orderFields) {
		t.Fatalf("%d fields tested, %d known", len(edit), len(orderFields))
	}
	d := orderIn(StatusRequiresAction, func(d *PaymentOrder) { d.ClaimedBy, d.LeaseUntil = "d1", timeAt(t0) })
	for i, f := range orderFields {
		if int(f.field) != i {
			t.Fatalf("field %s listed at %d", f.field, i)
		}
		e, ok := edit[f.field]
		if !ok {
			t.Fatalf("no edit of field %s", f.field)
		}
		next := snapshot(d)
		e(next)
		if got := changedFields(d, next); !slices.Equal(got, []OrderField{f.field}) {
			t.Errorf("changing %s alone: changed = %v", f.field, got)
		}
	}
	same := snapshot(d)
	dublin := time.FixedZone("IST", 3600)
	same.UpdatedAt = d.UpdatedAt.In(dublin)
	same.ActionSince = timeAt(d.ActionSince.In(dublin))
	if got := changedFields(d, same); len(got) != 0 {
		t.Errorf("the same instants in another zone: changed = %v", got)
	}
	empty, none := orderIn(StatusProcessing), orderIn(StatusProcessing)
	empty.NextAction = json.RawMessage{}
	if got := changedFields(none, empty); len(got) != 0 {
		t.Errorf("no next_action and an empty one: changed = %v", got)
	}
	if got := OrderField(99).String(); got != "OrderField(99)" {
		t.Errorf("unknown field = %q", got)
	}
}

// TestFieldValues: every field a change may write has a value of a type
// every engine stores, and the value is the order's.
func TestFieldValues(t *testing.T) {
	o := orderIn(StatusRequiresAction, func(o *PaymentOrder) { o.Refunded, o.FailureCode = 7, "expired_card" })
	want := map[OrderField]any{
		FieldStatus: "requires_action", FieldPaymentMethod: "pm_card_visa", FieldAttempt: 0, FieldKeySince: o.KeySince,
		FieldFormat: int(CurrentFormat), FieldPaymentIntentID: "pi_1", FieldClientSecret: "pi_1_secret",
		FieldNextAction: `{"type":"use_stripe_sdk"}`, FieldFailureCode: "expired_card", FieldActionSince: o.ActionSince,
		FieldClaimedBy: "", FieldLeaseUntil: (*time.Time)(nil), FieldRefunded: int64(7), FieldDisputed: int64(0),
		FieldUnknownFrom: (*time.Time)(nil), FieldUnknownTo: (*time.Time)(nil), FieldSweeps: 0, FieldSweptAt: (*time.Time)(nil),
		FieldUnknownCause: "", FieldAbsences: 0,
		FieldUpdatedAt: t0,
	}
	for _, f := range orderFields {
		got := o.Value(f.field)
		switch got.(type) {
		case string, int, int64, *time.Time, time.Time:
		default:
			t.Errorf("%s: a value of type %T", f.field, got)
		}
		if w, ok := want[f.field]; !ok || !reflect.DeepEqual(got, w) {
			t.Errorf("%s = %#v, want %#v", f.field, got, w)
		}
	}
	if got := o.Value(OrderField(99)); got != nil {
		t.Errorf("unknown field = %v", got)
	}
}
