package dispatch

import (
	"errors"
	"fmt"
	"time"

	"github.com/floodgate/floodgate"
)

// stepKind names what the charge of one gift does next. A worker drives a
// gift from step to step (charge.go) until stepDone; the decisions between
// steps are the pure functions below.
type stepKind int

const (
	// stepDone lets the gift go: it is settled, put off, or left with its
	// key for the next start (the dispatcher is stopping).
	stepDone stepKind = iota
	// stepCharge sends the charge under the gift's current key, after
	// wait: the first send, a retry of the same key, or the first send of
	// a new key.
	stepCharge
	// stepLookup hands an unknown outcome to the reconciler.
	stepLookup
	// stepPayment records what a PaymentIntent says.
	stepPayment
	// stepPoll retrieves a PaymentIntent the provider is still processing,
	// after wait.
	stepPoll
	// stepNewKey moves the gift to a new key generation (to confirm pi,
	// or with no PaymentIntent), then charges it.
	stepNewKey
	// stepSettle records settle, then lets the gift go.
	stepSettle
	// stepDefer gives the claim up for wait (0: Options.DeferWait), then
	// lets the gift go.
	stepDefer
	// stepStray is a PaymentIntent in a status floodgate never asks for:
	// an incident; the gift is put off for long.
	stepStray
)

func (k stepKind) String() string {
	return [...]string{"done", "charge", "lookup", "payment", "poll", "new_key", "settle", "defer", "stray"}[k]
}

// step is one state of a charge: what to do next, with what it needs.
type step struct {
	kind stepKind
	// wait comes before stepCharge and stepPoll; for stepDefer it is how
	// long the claim is given up (0: Options.DeferWait).
	wait time.Duration
	// payment is the PaymentIntent of stepPayment, stepPoll and stepStray.
	payment *floodgate.Payment
	// polls counts the retrieves of a processing PaymentIntent so far
	// (stepPayment, stepPoll).
	polls int
	// pi is the PaymentIntent stepNewKey confirms ("": none, a new one is
	// created).
	pi string
	// settle is stepSettle's settlement.
	settle floodgate.Settlement
	// cause is the failure that hid stepLookup's outcome, and class its
	// class (Decision.Class).
	cause error
	class string
	// handedOver marks a stepDone after which the order is no longer the
	// worker's (the sweeps have it, or it was settled meanwhile).
	handedOver bool
}

func (s step) String() string {
	switch s.kind {
	case stepCharge, stepPoll, stepDefer:
		return fmt.Sprintf("%s after %v", s.kind, s.wait)
	case stepSettle:
		return fmt.Sprintf("settle %s %s", s.settle.Status, s.settle.FailureCode)
	case stepLookup:
		return "lookup (" + s.class + ")"
	}
	return s.kind.String()
}

// processingPolls bounds how long a worker watches one PaymentIntent in
// processing (about seven minutes) before it lets the gift wait.
const processingPolls = 30

// maxGenerations bounds the new keys one charge may use after lookups
// found no payment, when the provider's refusals were not server errors
// (those are retried for as long as they last).
const maxGenerations = 3

// afterPayment is what a PaymentIntent means for the charge of don, polls
// retrieves after it was first seen processing: a settlement, a confirm
// under a new key (it exists, but no confirm of ours ran on it), another
// retrieve while the provider processes it, or an incident.
func afterPayment(don *floodgate.PaymentOrder, p *floodgate.Payment, polls int, now time.Time) step {
	if s, ok := settlementFor(don, p, now); ok {
		return step{kind: stepSettle, settle: s}
	}
	switch p.Status {
	case floodgate.PaymentRequiresConfirmation:
		return step{kind: stepNewKey, pi: p.ID}
	case floodgate.PaymentProcessing:
		// A resent key would only replay this answer: ask for the
		// PaymentIntent itself, for a while.
		if polls >= processingPolls {
			return step{kind: stepDefer}
		}
		return step{kind: stepPoll, payment: p, polls: polls, wait: min(time.Duration(polls+1)*time.Second, 30*time.Second)}
	}
	// requires_capture: floodgate never asks for manual capture.
	return step{kind: stepStray, payment: p}
}

// afterFailure is the step after a charge request failed with err, as the
// policy decided: let go (stopping), record the refusal, look the payment
// up, or send the same key again after the decision's wait.
func afterFailure(don *floodgate.PaymentOrder, err error, dec Decision, now time.Time) step {
	switch dec.Action {
	case Abandon:
		return step{kind: stepDone}
	case Final:
		return step{kind: stepSettle, settle: declined(don, err, now)}
	case Reconcile:
		return step{kind: stepLookup, cause: err, class: dec.Class}
	}
	return step{kind: stepCharge, wait: dec.Wait}
}

// afterLookupKey is the step after a lookup moved the gift to a new key,
// its generations-th in this charge, the outcome having been hidden by a
// failure of class: against a failing provider, charge after a backoff
// and never give up; otherwise charge at once, until maxGenerations new
// keys have found no payment and the provider still hides the outcome (a
// payment method already used): then fail it, which is safe, and the
// donor may bring another card. rnd is uniform in [0, 1).
func afterLookupKey(p Policy, don *floodgate.PaymentOrder, generations int, class string, rnd float64, now time.Time) step {
	if class == string(floodgate.ProviderServer) {
		return step{kind: stepCharge, wait: p.Backoff(generations, rnd)}
	}
	if generations >= maxGenerations {
		return step{kind: stepSettle, settle: floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusFailed,
			FailureCode: "processing_error", Note: "no payment after repeated unknown outcomes: " + class, At: now}}
	}
	return step{kind: stepCharge}
}

// settlementFor is what a PaymentIntent in its current status means for
// the order, made under no claim (a worker's step adds its claim's token);
// ok is false for a status that settles nothing.
func settlementFor(don *floodgate.PaymentOrder, p *floodgate.Payment, at time.Time) (floodgate.Settlement, bool) {
	s := floodgate.Settlement{OrderID: don.ID, PaymentIntentID: p.ID, At: at}
	switch p.Status {
	case floodgate.PaymentSucceeded:
		s.Status = floodgate.StatusSucceeded
	case floodgate.PaymentRequiresAction:
		s.Status, s.ClientSecret, s.NextAction = floodgate.StatusRequiresAction, p.ClientSecret, p.NextAction
	case floodgate.PaymentRequiresPaymentMethod:
		s.Status, s.FailureCode = floodgate.StatusFailed, GenericFailure(p.FailureCode, p.DeclineCode)
	case floodgate.PaymentCanceled:
		s.Status, s.Note = floodgate.StatusCanceled, "canceled at the provider"
	default:
		return s, false
	}
	return s, true
}

// declined is the settlement of a final provider refusal: a card decline
// with the code a donor may see, anything else a processing error whose
// note names the provider's code.
func declined(don *floodgate.PaymentOrder, err error, now time.Time) floodgate.Settlement {
	s := floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusFailed, At: now}
	var pe *floodgate.ProviderError
	if errors.As(err, &pe) {
		s.FailureCode = GenericFailure(pe.Code, pe.DeclineCode)
		if pe.Kind != floodgate.ProviderCard {
			s.FailureCode = "processing_error"
			s.Note = "provider refused the request: " + pe.Code
		}
		if pe.Payment != nil {
			s.PaymentIntentID = pe.Payment.ID
		}
	}
	return s
}

// GenericFailure turns a provider's failure code into one a donor may see:
// never a fraud signal (stolen_card, fraudulent, lost_card ...).
func GenericFailure(code, decline string) string {
	switch {
	case code == "expired_card", code == "incorrect_cvc", code == "processing_error", code == "incorrect_number":
		return code
	case code == "payment_intent_authentication_failure":
		return "authentication_failed"
	case decline == "insufficient_funds":
		return "insufficient_funds"
	}
	return "card_declined"
}
