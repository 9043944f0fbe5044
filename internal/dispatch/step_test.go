package dispatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

var stepNow = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

// TestAfterPayment: what each PaymentIntent status means for the charge.
func TestAfterPayment(t *testing.T) {
	don := &floodgate.PaymentOrder{ID: "po_1"}
	pi := func(status floodgate.PaymentStatus) *floodgate.Payment {
		return &floodgate.Payment{ID: "pi_1", Status: status, FailureCode: "card_declined", DeclineCode: "stolen_card"}
	}
	for _, tc := range []struct {
		name   string
		p      *floodgate.Payment
		polls  int
		want   stepKind
		status floodgate.DonationStatus
		code   string
		wait   time.Duration
		pi     string
	}{
		{name: "succeeded", p: pi(floodgate.PaymentSucceeded), want: stepSettle, status: floodgate.StatusSucceeded},
		{name: "3-D Secure", p: pi(floodgate.PaymentRequiresAction), want: stepSettle, status: floodgate.StatusRequiresAction},
		{name: "declined, code a donor may see", p: pi(floodgate.PaymentRequiresPaymentMethod), want: stepSettle,
			status: floodgate.StatusFailed, code: "card_declined"},
		{name: "canceled", p: pi(floodgate.PaymentCanceled), want: stepSettle, status: floodgate.StatusCanceled},
		{name: "exists, never confirmed: confirm under a new key", p: pi(floodgate.PaymentRequiresConfirmation), want: stepNewKey, pi: "pi_1"},
		{name: "processing: first poll after a second", p: pi(floodgate.PaymentProcessing), want: stepPoll, wait: time.Second},
		{name: "processing: polls slow down", p: pi(floodgate.PaymentProcessing), polls: 4, want: stepPoll, wait: 5 * time.Second},
		{name: "processing: never more than 30s apart", p: pi(floodgate.PaymentProcessing), polls: 29, want: stepPoll, wait: 30 * time.Second},
		{name: "processing too long: put off", p: pi(floodgate.PaymentProcessing), polls: processingPolls, want: stepDefer},
		{name: "manual capture floodgate never asks for: an incident", p: pi(floodgate.PaymentRequiresCapture), want: stepStray},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := afterPayment(don, tc.p, tc.polls, stepNow)
			if s.kind != tc.want || s.wait != tc.wait || s.pi != tc.pi {
				t.Fatalf("step %v (pi %q), want %v after %v (pi %q)", s, s.pi, tc.want, tc.wait, tc.pi)
			}
			if s.kind == stepSettle && (s.settle.Status != tc.status || s.settle.FailureCode != tc.code ||
				s.settle.OrderID != don.ID || s.settle.PaymentIntentID != "pi_1" || !s.settle.At.Equal(stepNow)) {
				t.Fatalf("settlement %+v, want %s %q", s.settle, tc.status, tc.code)
			}
			if s.kind == stepPoll && (s.payment != tc.p || s.polls != tc.polls) {
				t.Fatalf("poll of %v after %d polls", s.payment, s.polls)
			}
		})
	}
}

// TestAfterFailure: the policy's decision on a failed send becomes the
// next step; nothing but Final settles, and only Abandon lets go.
func TestAfterFailure(t *testing.T) {
	don := &floodgate.PaymentOrder{ID: "po_1"}
	card := &floodgate.ProviderError{Kind: floodgate.ProviderCard, Code: "card_declined", DeclineCode: "fraudulent",
		Payment: &floodgate.Payment{ID: "pi_9"}}
	invalid := &floodgate.ProviderError{Kind: floodgate.ProviderInvalid, Code: "parameter_invalid_integer"}
	server := &floodgate.ProviderError{Kind: floodgate.ProviderServer}
	for _, tc := range []struct {
		name string
		err  error
		dec  Decision
		want step
	}{
		{name: "stopping: let go, the key kept", err: context.Canceled, dec: Decision{Action: Abandon},
			want: step{kind: stepDone}},
		{name: "card decline: failed, generic code", err: card, dec: Decision{Action: Final},
			want: step{kind: stepSettle, settle: floodgate.Settlement{OrderID: "po_1", Status: floodgate.StatusFailed,
				FailureCode: "card_declined", PaymentIntentID: "pi_9", At: stepNow}}},
		{name: "request refused: processing error, code in the note", err: invalid, dec: Decision{Action: Final},
			want: step{kind: stepSettle, settle: floodgate.Settlement{OrderID: "po_1", Status: floodgate.StatusFailed,
				FailureCode: "processing_error", Note: "provider refused the request: parameter_invalid_integer", At: stepNow}}},
		{name: "outcome unknown: look it up", err: server, dec: Decision{Action: Reconcile, Class: "server"},
			want: step{kind: stepLookup, cause: server, class: "server"}},
		{name: "retry the same key after the wait", err: server, dec: Decision{Action: RetrySame, Wait: time.Second},
			want: step{kind: stepCharge, wait: time.Second}},
		{name: "credentials refused: hold, retry later", err: server, dec: Decision{Action: Hold, Wait: 10 * time.Second},
			want: step{kind: stepCharge, wait: 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := afterFailure(don, tc.err, tc.dec, stepNow)
			if got.kind != tc.want.kind || got.wait != tc.want.wait || got.class != tc.want.class ||
				!errors.Is(got.cause, tc.want.cause) || !sameSettlement(got.settle, tc.want.settle) {
				t.Fatalf("step %v %+v, want %v %+v", got, got.settle, tc.want, tc.want.settle)
			}
		})
	}
}

func sameSettlement(a, b floodgate.Settlement) bool {
	return a.OrderID == b.OrderID && a.Status == b.Status && a.FailureCode == b.FailureCode &&
		a.PaymentIntentID == b.PaymentIntentID && a.Note == b.Note && a.At.Equal(b.At)
}

// TestAfterLookupKey: after a lookup found no payment, a failing provider
// is waited out for ever, with a backoff; any other hidden outcome is
// given maxGenerations new keys, then the gift fails.
func TestAfterLookupKey(t *testing.T) {
	p := Policy{Base: time.Second, Cap: time.Minute}
	don := &floodgate.PaymentOrder{ID: "po_1"}
	server := string(floodgate.ProviderServer)
	if s := afterLookupKey(p, don, 1, server, 0.5, stepNow); s.kind != stepCharge || s.wait != time.Second {
		t.Fatalf("server, first new key: %v, want charge after 1s", s)
	}
	if s := afterLookupKey(p, don, 50, server, 0.5, stepNow); s.kind != stepCharge || s.wait != 30*time.Second {
		t.Fatalf("server, fiftieth new key: %v, want charge after the capped backoff", s)
	}
	for g := 1; g < maxGenerations; g++ {
		if s := afterLookupKey(p, don, g, "idempotency_error", 0.5, stepNow); s.kind != stepCharge || s.wait != 0 {
			t.Fatalf("new key %d: %v, want charge at once", g, s)
		}
	}
	s := afterLookupKey(p, don, maxGenerations, "invalid_request", 0.5, stepNow)
	if s.kind != stepSettle || s.settle.Status != floodgate.StatusFailed || s.settle.FailureCode != "processing_error" ||
		s.settle.Note != "no payment after repeated unknown outcomes: invalid_request" {
		t.Fatalf("after %d new keys: %v %+v, want failed", maxGenerations, s, s.settle)
	}
}
