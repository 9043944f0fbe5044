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

// donationIn returns a 25.00 gift as it stands in status s after the usual
// path there: claimed from the line, sent, answered by the provider.
func donationIn(s DonationStatus, edits ...func(*Donation)) *Donation {
	d := &Donation{ID: "don_1", Seq: 7, CampaignID: "c", IdempotencyKey: "key-1", RequestHash: []byte("hash-1"),
		Amount: 2500, Currency: "eur", Email: "d@example.org", Name: "Donor", PaymentMethod: "pm_card_visa",
		ClientAddr: "192.0.2.1", Status: s, CreatedAt: t0, UpdatedAt: t0}
	if s != StatusAccepted {
		d.KeySince = timeAt(t0)
	}
	switch s {
	case StatusProcessing:
		d.ClaimedBy, d.LeaseUntil = "d1", timeAt(t0.Add(time.Minute))
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
func snapshot(d *Donation) *Donation {
	c := *d
	c.RequestHash = slices.Clone(d.RequestHash)
	c.NextAction = slices.Clone(d.NextAction)
	return &c
}

// fixedPart is d with every field a state change may write zeroed: what
// no transition may change.
func fixedPart(d *Donation) Donation {
	c := *d
	c.Status, c.PaymentMethod, c.Attempt, c.KeySince = "", "", 0, nil
	c.PaymentIntentID, c.ClientSecret, c.NextAction, c.FailureCode = "", "", nil, ""
	c.ActionSince, c.ClaimedBy, c.LeaseUntil = nil, "", nil
	c.Refunded, c.Disputed, c.UpdatedAt = 0, 0, time.Time{}
	return c
}

// transitionCase is one row of a decision's table: the donation before,
// and either the refusal (code and message) or the transition expected.
type transitionCase struct {
	name   string
	before *Donation
	decide func(*Donation) (Transition, error)
	// want edits a copy of before into the donation expected after.
	want    func(*Donation)
	changed []DonationField
	history *StatusChange
	delta   TotalsDelta
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
				if got.Donation != nil || got.History != nil || !got.Delta.Zero() || got.Changed != nil {
					t.Fatalf("a refusal came with a transition: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			want := snapshot(tt.before)
			tt.want(want)
			if !reflect.DeepEqual(got.Donation, want) {
				t.Fatalf("donation after =\n%+v\nwant\n%+v", got.Donation, want)
			}
			if !reflect.DeepEqual(fixedPart(got.Donation), fixedPart(before)) {
				t.Fatalf("a field fixed at acceptance changed:\n%+v\nwas\n%+v", got.Donation, before)
			}
			if !slices.Equal(got.Changed, tt.changed) {
				t.Fatalf("changed = %v, want %v", got.Changed, tt.changed)
			}
			if !reflect.DeepEqual(got.History, tt.history) {
				t.Fatalf("history = %+v, want %+v", got.History, tt.history)
			}
			if got.Delta != tt.delta {
				t.Fatalf("delta = %+v, want %+v", got.Delta, tt.delta)
			}
			if !got.At.Equal(got.Donation.UpdatedAt) {
				t.Fatalf("at = %v, but the donation was updated at %v", got.At, got.Donation.UpdatedAt)
			}
		})
	}
}

func settle(s Settlement) func(*Donation) (Transition, error) {
	return func(d *Donation) (Transition, error) { return ApplySettlement(d, s) }
}

func TestApplySettlement(t *testing.T) {
	next := json.RawMessage(`{"type":"redirect_to_url"}`)
	settled := func(edit func(*Donation)) func(*Donation) {
		return func(d *Donation) {
			d.ClaimedBy, d.LeaseUntil, d.UpdatedAt = "", nil, t1
			edit(d)
		}
	}
	claimCleared := []DonationField{FieldClaimedBy, FieldLeaseUntil, FieldUpdatedAt}
	runTransitions(t, []transitionCase{{
		name:   "charged: the PaymentIntent recorded, the claim cleared, pending becomes raised",
		before: donationIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", ClientSecret: "pi_1_secret", At: t1}),
		want: settled(func(d *Donation) {
			d.Status, d.PaymentIntentID, d.ClientSecret = StatusSucceeded, "pi_1", "pi_1_secret"
		}),
		changed: append([]DonationField{FieldStatus, FieldPaymentIntentID, FieldClientSecret}, claimCleared...),
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "declined: the failure code recorded and in the history",
		before: donationIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusFailed, PaymentIntentID: "pi_1", FailureCode: "card_declined", At: t1}),
		want: settled(func(d *Donation) {
			d.Status, d.PaymentIntentID, d.FailureCode = StatusFailed, "pi_1", "card_declined"
		}),
		changed: append([]DonationField{FieldStatus, FieldPaymentIntentID, FieldFailureCode}, claimCleared...),
		history: &StatusChange{Status: StatusFailed, At: t1, FailureCode: "card_declined"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1},
	}, {
		name:   "3-D Secure: next_action kept, action_since stamped, still pending",
		before: donationIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusRequiresAction, PaymentIntentID: "pi_1", ClientSecret: "pi_1_secret", NextAction: next, At: t1}),
		want: settled(func(d *Donation) {
			d.Status, d.PaymentIntentID, d.ClientSecret = StatusRequiresAction, "pi_1", "pi_1_secret"
			d.NextAction, d.ActionSince = next, timeAt(t1)
		}),
		changed: []DonationField{FieldStatus, FieldPaymentIntentID, FieldClientSecret, FieldNextAction, FieldActionSince,
			FieldClaimedBy, FieldLeaseUntil, FieldUpdatedAt},
		history: &StatusChange{Status: StatusRequiresAction, At: t1},
	}, {
		name:   "authenticated: a settlement naming no PaymentIntent keeps the recorded one, next_action goes, action_since stays",
		before: donationIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusSucceeded, At: t1}),
		want: func(d *Donation) {
			d.Status, d.NextAction, d.UpdatedAt = StatusSucceeded, nil, t1
		},
		changed: []DonationField{FieldStatus, FieldNextAction, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "action timeout: canceled with its note",
		before: donationIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusCanceled, Note: "action timeout", At: t1}),
		want: func(d *Donation) {
			d.Status, d.NextAction, d.UpdatedAt = StatusCanceled, nil, t1
		},
		changed: []DonationField{FieldStatus, FieldNextAction, FieldUpdatedAt},
		history: &StatusChange{Status: StatusCanceled, At: t1, Note: "action timeout"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1},
	}, {
		name:   "a success reported after a failure is recorded, and the failure code goes",
		before: donationIn(StatusFailed),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", At: t1}),
		want: func(d *Donation) {
			d.Status, d.FailureCode, d.UpdatedAt = StatusSucceeded, "", t1
		},
		changed: []DonationField{FieldStatus, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1},
	}, {
		name:   "a success after a local cancel is recorded: money that moved is counted",
		before: donationIn(StatusCanceled),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_9", At: t1}),
		want: func(d *Donation) {
			d.Status, d.PaymentIntentID, d.UpdatedAt = StatusSucceeded, "pi_9", t1
		},
		changed: []DonationField{FieldStatus, FieldPaymentIntentID, FieldUpdatedAt},
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 2500, Donations: 1},
	}, {
		name: "a success after an early refund brings in only what is left",
		before: donationIn(StatusProcessing, func(d *Donation) {
			d.Refunded = 1000
		}),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_1", At: t1}),
		want: settled(func(d *Donation) {
			d.Status, d.PaymentIntentID = StatusSucceeded, "pi_1"
		}),
		changed: append([]DonationField{FieldStatus, FieldPaymentIntentID}, claimCleared...),
		history: &StatusChange{Status: StatusSucceeded, At: t1},
		delta:   TotalsDelta{Raised: 1500, Donations: 1, Pending: -2500, PendingCount: -1},
	}, {
		name:   "given back to the line: waiting again, still pending",
		before: donationIn(StatusProcessing),
		decide: settle(Settlement{Status: StatusAccepted, Note: "lease given up", At: t1}),
		want: settled(func(d *Donation) {
			d.Status = StatusAccepted
		}),
		changed: append([]DonationField{FieldStatus}, claimCleared...),
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "lease given up"},
		delta:   TotalsDelta{Waiting: 1},
	}, {
		name:   "refused: a late payment_failed never overwrites succeeded",
		before: donationIn(StatusSucceeded),
		decide: settle(Settlement{Status: StatusFailed, FailureCode: "card_declined", At: t1}),
		code:   ESTATE, msg: "Donation cannot move from succeeded to failed.",
	}, {
		name:   "refused: nothing leaves succeeded, not even to succeeded again",
		before: donationIn(StatusSucceeded),
		decide: settle(Settlement{Status: StatusSucceeded, PaymentIntentID: "pi_2", At: t1}),
		code:   ESTATE, msg: "Donation cannot move from succeeded to succeeded.",
	}, {
		name:   "refused: a gift still in line was never charged",
		before: donationIn(StatusAccepted),
		decide: settle(Settlement{Status: StatusSucceeded, At: t1}),
		code:   ESTATE, msg: "Donation cannot move from accepted to succeeded.",
	}, {
		name:   "refused: From restricts the statuses it applies in",
		before: donationIn(StatusRequiresAction),
		decide: settle(Settlement{Status: StatusFailed, From: []DonationStatus{StatusProcessing}, At: t1}),
		code:   ESTATE, msg: "Donation is requires_action.",
	}})
}

func TestApplyCancel(t *testing.T) {
	cancel := func(d *Donation) (Transition, error) { return ApplyCancel(d, t1) }
	runTransitions(t, []transitionCase{{
		name:    "a gift still in line leaves it",
		before:  donationIn(StatusAccepted),
		decide:  cancel,
		want:    func(d *Donation) { d.Status, d.UpdatedAt = StatusCanceled, t1 },
		changed: []DonationField{FieldStatus, FieldUpdatedAt},
		history: &StatusChange{Status: StatusCanceled, At: t1, Note: "canceled by the donor"},
		delta:   TotalsDelta{Pending: -2500, PendingCount: -1, Waiting: -1},
	}, {
		name: "refused once claimed: a charge may be under way", before: donationIn(StatusProcessing), decide: cancel,
		code: ESTATE, msg: "Donation is processing.",
	}, {
		name: "refused while the bank asks for 3-D Secure", before: donationIn(StatusRequiresAction), decide: cancel,
		code: ESTATE, msg: "Donation is requires_action.",
	}, {
		name: "refused when charged", before: donationIn(StatusSucceeded), decide: cancel,
		code: ESTATE, msg: "Donation is succeeded.",
	}, {
		name: "refused when failed", before: donationIn(StatusFailed), decide: cancel,
		code: ESTATE, msg: "Donation is failed.",
	}, {
		name: "refused twice", before: donationIn(StatusCanceled), decide: cancel,
		code: ESTATE, msg: "Donation is canceled.",
	}})
}

func TestApplyPaymentMethod(t *testing.T) {
	replace := func(d *Donation) (Transition, error) { return ApplyPaymentMethod(d, "pm_card_mastercard", t1) }
	tests := []transitionCase{{
		name:   "a failed gift goes back in line at its old place with the next key, not yet sent",
		before: donationIn(StatusFailed),
		decide: replace,
		want: func(d *Donation) {
			d.Status, d.PaymentMethod, d.Attempt, d.KeySince = StatusAccepted, "pm_card_mastercard", 1, nil
			d.FailureCode, d.UpdatedAt = "", t1
		},
		changed: []DonationField{FieldStatus, FieldPaymentMethod, FieldAttempt, FieldKeySince, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "new payment method"},
		delta:   TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1},
	}, {
		name: "a failed 3-D Secure attempt: its next_action goes, its PaymentIntent stays",
		before: donationIn(StatusFailed, func(d *Donation) {
			d.Attempt, d.ClientSecret, d.NextAction = 2, "pi_1_secret", json.RawMessage(`{}`)
		}),
		decide: replace,
		want: func(d *Donation) {
			d.Status, d.PaymentMethod, d.Attempt, d.KeySince = StatusAccepted, "pm_card_mastercard", 3, nil
			d.FailureCode, d.NextAction, d.UpdatedAt = "", nil, t1
		},
		changed: []DonationField{FieldStatus, FieldPaymentMethod, FieldAttempt, FieldKeySince, FieldNextAction, FieldFailureCode, FieldUpdatedAt},
		history: &StatusChange{Status: StatusAccepted, At: t1, Note: "new payment method"},
		delta:   TotalsDelta{Pending: 2500, PendingCount: 1, Waiting: 1},
	}}
	for _, s := range []DonationStatus{StatusAccepted, StatusProcessing, StatusRequiresAction, StatusSucceeded, StatusCanceled} {
		tests = append(tests, transitionCase{name: "refused when " + string(s), before: donationIn(s), decide: replace,
			code: ESTATE, msg: "Only a failed donation takes another payment method; this one is " + string(s) + "."})
	}
	runTransitions(t, tests)
}

func TestApplyNewKeyGeneration(t *testing.T) {
	newKey := func(owner string, from int, pi string) func(*Donation) (Transition, error) {
		return func(d *Donation) (Transition, error) { return ApplyNewKeyGeneration(d, owner, from, pi, t1) }
	}
	runTransitions(t, []transitionCase{{
		name:    "no payment exists for the key: the next generation, first sent now, still claimed",
		before:  donationIn(StatusProcessing),
		decide:  newKey("d1", 0, ""),
		want:    func(d *Donation) { d.Attempt, d.KeySince, d.UpdatedAt = 1, timeAt(t1), t1 },
		changed: []DonationField{FieldAttempt, FieldKeySince, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0"},
	}, {
		name:   "a PaymentIntent awaiting confirmation is recorded",
		before: donationIn(StatusProcessing, func(d *Donation) { d.Attempt = 1 }),
		decide: newKey("d1", 1, "pi_found"),
		want: func(d *Donation) {
			d.Attempt, d.KeySince, d.PaymentIntentID, d.UpdatedAt = 2, timeAt(t1), "pi_found", t1
		},
		changed: []DonationField{FieldAttempt, FieldKeySince, FieldPaymentIntentID, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1, Note: "new idempotency key (generation 2) to confirm pi_found"},
	}, {
		name:    "none found: the PaymentIntent recorded before stays",
		before:  donationIn(StatusProcessing, func(d *Donation) { d.PaymentIntentID = "pi_old" }),
		decide:  newKey("d1", 0, ""),
		want:    func(d *Donation) { d.Attempt, d.KeySince, d.UpdatedAt = 1, timeAt(t1), t1 },
		changed: []DonationField{FieldAttempt, FieldKeySince, FieldUpdatedAt},
		history: &StatusChange{Status: StatusProcessing, At: t1,
			Note: "new idempotency key (generation 1): no payment exists for generation 0"},
	}, {
		name:   "refused: a second caller that saw the same generation loses",
		before: donationIn(StatusProcessing, func(d *Donation) { d.Attempt = 1 }),
		decide: newKey("d1", 0, ""),
		code:   ESTATE, msg: "Donation is processing at key generation 1, not processing at 0.",
	}, {
		name:   "refused: only the claim's holder moves it on",
		before: donationIn(StatusProcessing),
		decide: newKey("d2", 0, ""),
		code:   ESTATE, msg: `Donation is claimed by "d1", not "d2".`,
	}, {
		name:   "refused: a deferred gift is nobody's",
		before: donationIn(StatusProcessing, func(d *Donation) { d.ClaimedBy = "" }),
		decide: newKey("d1", 0, ""),
		code:   ESTATE, msg: `Donation is claimed by "", not "d1".`,
	}, {
		name:   "refused: not yet claimed",
		before: donationIn(StatusAccepted),
		decide: newKey("d1", 0, ""),
		code:   ESTATE, msg: "Donation is accepted at key generation 0, not processing at 0.",
	}, {
		name:   "refused: settled meanwhile",
		before: donationIn(StatusRequiresAction),
		decide: newKey("d1", 0, ""),
		code:   ESTATE, msg: "Donation is requires_action at key generation 0, not processing at 0.",
	}})
}

func TestApplyReversal(t *testing.T) {
	reverse := func(kind Reversal, total int64) func(*Donation) (Transition, error) {
		return func(d *Donation) (Transition, error) { return ApplyReversal(d, kind, total, t1) }
	}
	taken := func(refunded, disputed int64) func(*Donation) {
		return func(d *Donation) {
			d.Status = StatusSucceeded
			d.Refunded, d.Disputed = refunded, disputed
		}
	}
	line := func(note string) *StatusChange { return &StatusChange{Status: StatusSucceeded, At: t1, Note: note} }
	runTransitions(t, []transitionCase{{
		name:    "partial refund",
		before:  donationIn(StatusSucceeded),
		decide:  reverse(ReversalRefund, 1000),
		want:    func(d *Donation) { d.Refunded, d.UpdatedAt = 1000, t1 },
		changed: []DonationField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 1000 in all"),
		delta:   TotalsDelta{Raised: -1000},
	}, {
		name:    "a refund reported as a cumulative total grows by the difference",
		before:  donationIn(StatusSucceeded, taken(1000, 0)),
		decide:  reverse(ReversalRefund, 2500),
		want:    func(d *Donation) { d.Refunded, d.UpdatedAt = 2500, t1 },
		changed: []DonationField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 2500 in all"),
		delta:   TotalsDelta{Raised: -1500},
	}, {
		name:    "dispute",
		before:  donationIn(StatusSucceeded),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *Donation) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []DonationField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
		delta:   TotalsDelta{Raised: -2500},
	}, {
		name:    "a dispute after a partial refund takes off only what was left",
		before:  donationIn(StatusSucceeded, taken(1000, 0)),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *Donation) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []DonationField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
		delta:   TotalsDelta{Raised: -1500},
	}, {
		name:    "never more than the gift's amount in all",
		before:  donationIn(StatusSucceeded, taken(2500, 0)),
		decide:  reverse(ReversalDispute, 2500),
		want:    func(d *Donation) { d.Disputed, d.UpdatedAt = 2500, t1 },
		changed: []DonationField{FieldDisputed, FieldUpdatedAt},
		history: line("dispute: 2500 in all"),
	}, {
		name:    "a report beyond the amount is recorded as reported, raised goes down by the amount only",
		before:  donationIn(StatusSucceeded),
		decide:  reverse(ReversalRefund, 3000),
		want:    func(d *Donation) { d.Refunded, d.UpdatedAt = 3000, t1 },
		changed: []DonationField{FieldRefunded, FieldUpdatedAt},
		history: line("refund: 3000 in all"),
		delta:   TotalsDelta{Raised: -2500},
	}, {
		name:    "before the success it reverses: recorded, raised untouched until then",
		before:  donationIn(StatusRequiresAction),
		decide:  reverse(ReversalRefund, 1000),
		want:    func(d *Donation) { d.Refunded, d.UpdatedAt = 1000, t1 },
		changed: []DonationField{FieldRefunded, FieldUpdatedAt},
		history: &StatusChange{Status: StatusRequiresAction, At: t1, Note: "refund: 1000 in all"},
	}, {
		name:   "refused: a replayed report changes nothing",
		before: donationIn(StatusSucceeded, taken(2500, 0)),
		decide: reverse(ReversalRefund, 2500),
		code:   ESTATE, msg: "Already recorded.",
	}, {
		name:   "refused: an older report arriving late changes nothing",
		before: donationIn(StatusSucceeded, taken(2500, 0)),
		decide: reverse(ReversalRefund, 1000),
		code:   ESTATE, msg: "Already recorded.",
	}, {
		name:   "refused: an unknown kind",
		before: donationIn(StatusSucceeded),
		decide: reverse("chargeback", 1000),
		code:   EINVALID, msg: `Unknown reversal "chargeback".`,
	}})
}

func TestReplay(t *testing.T) {
	prev := donationIn(StatusSucceeded)
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
	edit := map[DonationField]func(*Donation){
		FieldStatus:          func(d *Donation) { d.Status = StatusFailed },
		FieldPaymentMethod:   func(d *Donation) { d.PaymentMethod = "pm_other" },
		FieldAttempt:         func(d *Donation) { d.Attempt++ },
		FieldKeySince:        func(d *Donation) { d.KeySince = nil },
		FieldPaymentIntentID: func(d *Donation) { d.PaymentIntentID = "pi_other" },
		FieldClientSecret:    func(d *Donation) { d.ClientSecret = "other_secret" },
		FieldNextAction:      func(d *Donation) { d.NextAction = json.RawMessage(`{"type":"other"}`) },
		FieldFailureCode:     func(d *Donation) { d.FailureCode = "expired_card" },
		FieldActionSince:     func(d *Donation) { d.ActionSince = timeAt(t1) },
		FieldClaimedBy:       func(d *Donation) { d.ClaimedBy = "d2" },
		FieldLeaseUntil:      func(d *Donation) { d.LeaseUntil = timeAt(t1) },
		FieldRefunded:        func(d *Donation) { d.Refunded = 1 },
		FieldDisputed:        func(d *Donation) { d.Disputed = 1 },
		FieldUpdatedAt:       func(d *Donation) { d.UpdatedAt = t1 },
	}
	if len(edit) != len(donationFields) {
		t.Fatalf("%d fields tested, %d known", len(edit), len(donationFields))
	}
	d := donationIn(StatusRequiresAction, func(d *Donation) { d.ClaimedBy, d.LeaseUntil = "d1", timeAt(t0) })
	for i, f := range donationFields {
		if int(f.field) != i {
			t.Fatalf("field %s listed at %d", f.field, i)
		}
		e, ok := edit[f.field]
		if !ok {
			t.Fatalf("no edit of field %s", f.field)
		}
		next := snapshot(d)
		e(next)
		if got := changedFields(d, next); !slices.Equal(got, []DonationField{f.field}) {
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
	empty, none := donationIn(StatusProcessing), donationIn(StatusProcessing)
	empty.NextAction = json.RawMessage{}
	if got := changedFields(none, empty); len(got) != 0 {
		t.Errorf("no next_action and an empty one: changed = %v", got)
	}
	if got := DonationField(99).String(); got != "DonationField(99)" {
		t.Errorf("unknown field = %q", got)
	}
}
