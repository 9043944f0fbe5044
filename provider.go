package floodgate

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PaymentStatus is a PaymentIntent's status, with Stripe's values.
type PaymentStatus string

const (
	PaymentRequiresPaymentMethod PaymentStatus = "requires_payment_method"
	PaymentRequiresConfirmation  PaymentStatus = "requires_confirmation"
	PaymentRequiresAction        PaymentStatus = "requires_action"
	PaymentProcessing            PaymentStatus = "processing"
	PaymentRequiresCapture       PaymentStatus = "requires_capture"
	PaymentCanceled              PaymentStatus = "canceled"
	PaymentSucceeded             PaymentStatus = "succeeded"
)

// Payment is what floodgate knows of one PaymentIntent at the provider.
type Payment struct {
	ID           string
	Status       PaymentStatus
	Amount       int64
	Currency     string
	ClientSecret string
	// NextAction is the provider's next_action object, raw JSON, when the
	// donor must act (3-D Secure).
	NextAction []byte
	// FailureCode is last_payment_error.code (card_declined, ...).
	FailureCode string
	// DeclineCode is last_payment_error.decline_code; it may name fraud
	// and is never shown to a donor.
	DeclineCode string
	// PaymentMethod is the id of the payment method attached now (Stripe
	// detaches it when a payment fails).
	PaymentMethod string
	// FailedPaymentMethod is last_payment_error.payment_method.id: the
	// method the last failed attempt used.
	FailedPaymentMethod string
	// Fingerprint identifies the card behind the payment method, when the
	// provider says.
	Fingerprint string
	Metadata    map[string]string
	Created     time.Time
}

// DonationID is the donation a payment's metadata names (MetaDonation).
func (p *Payment) DonationID() string { return p.Metadata[MetaDonation] }

// ChargeRequest asks for one payment order to be charged; the order makes
// it (PaymentOrder.ChargeRequest).
type ChargeRequest struct {
	// PaymentIntentID, when set, names the order's existing
	// PaymentIntent, to be confirmed again with PaymentMethod (after a
	// decline). Otherwise a PaymentIntent is created with confirm=true.
	PaymentIntentID string
	Amount          int64
	Currency        string
	PaymentMethod   string
	// IdempotencyKey is derived from the order and its key generation:
	// the same request sent again can never charge twice.
	IdempotencyKey string
	Description    string
	// Metadata names what the payment is for (see RefOf); a created
	// PaymentIntent carries it.
	Metadata map[string]string
}

// PaymentQuery lists payments created in a window, to find the one an
// order may have made when an answer was lost.
type PaymentQuery struct {
	CreatedFrom time.Time
	CreatedTo   time.Time
	// Metadata, when set, keeps only payments whose metadata holds each of
	// its pairs (an order's Lookup).
	Metadata map[string]string
	// After is the cursor: the Last of the previous page ("" for the first).
	After string
}

// Matches reports whether p is one q keeps by its metadata.
func (q PaymentQuery) Matches(p *Payment) bool { return matches(p.Metadata, q.Metadata) }

// DonationLookup is the query metadata of a donation's payments: every
// payment made for donation id carries it.
func DonationLookup(id string) map[string]string { return map[string]string{MetaDonation: id} }

// PaymentPage is one page of a PaymentQuery, newest first.
type PaymentPage struct {
	// Payments are the page's payments that match the query.
	Payments []*Payment
	// Last is the id of the last payment on the page, matching or not:
	// the cursor for the next page.
	Last string
	// More says whether another page follows.
	More bool
}

// AllPayments follows every page of q. It is for tools and tests; the
// dispatcher pages by hand so that each page is paced as its own request.
func AllPayments(ctx context.Context, p Provider, q PaymentQuery) ([]*Payment, error) {
	var out []*Payment
	for {
		page, err := p.FindPayments(ctx, q)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Payments...)
		if !page.More || page.Last == "" {
			return out, nil
		}
		q.After = page.Last
	}
}

// Provider charges payments. Implementations speak the provider's API with
// no retries of their own: every attempt is the dispatcher's decision. Any
// error is a *ProviderError, or a context error.
type Provider interface {
	// Charge creates and confirms a PaymentIntent, or confirms an existing
	// one with a new payment method. A card decline is a ProviderError of
	// kind ProviderCard whose Payment is the declined PaymentIntent.
	Charge(ctx context.Context, r ChargeRequest) (*Payment, error)
	// Payment retrieves one PaymentIntent.
	Payment(ctx context.Context, id string) (*Payment, error)
	// FindPayments returns one page of PaymentIntents by creation window
	// (never by search, which lags): one provider request.
	FindPayments(ctx context.Context, q PaymentQuery) (PaymentPage, error)
	// CancelPayment cancels a PaymentIntent that awaits the donor.
	CancelPayment(ctx context.Context, id, idempotencyKey string) (*Payment, error)
	// CardFingerprint returns the fingerprint of the card behind a payment
	// method: the same for every tokenisation of one card. One provider
	// request, made only while card testing is suspected.
	CardFingerprint(ctx context.Context, paymentMethodID string) (string, error)
	// RefundPayment refunds a succeeded PaymentIntent in full under
	// idempotencyKey (a second payment for one order: floodgate never
	// refunds otherwise) and returns the refund's id.
	RefundPayment(ctx context.Context, paymentIntentID, idempotencyKey string) (string, error)
	// Clock bounds the provider's clock against this process's, from the
	// answers seen so far.
	Clock() ProviderClock
}

// ProviderClock bounds the provider's clock against this process's: at
// local time t, the provider's clock reads between t+Low and t+High. An
// answer sent at local time s and received at r whose Date header reads D
// (whole seconds, rounded down) was dated while the provider's clock read
// within [D, D+1s), at a local time within [s, r]: the offset lies within
// [D-r, D+1s-s]. Known is false until an answer carried a Date.
type ProviderClock struct {
	Low, High time.Duration
	Known     bool
}

// Observe narrows c by one answer: sent and received at local times s and
// r, dated date by the provider. An answer whose bounds do not meet c's
// (either clock was stepped) starts c again from its own.
func (c ProviderClock) Observe(s, r, date time.Time) ProviderClock {
	low, high := date.Sub(r), date.Add(time.Second).Sub(s)
	if !c.Known || low > c.High || high < c.Low {
		return ProviderClock{Low: low, High: high, Known: true}
	}
	return ProviderClock{Low: max(low, c.Low), High: min(high, c.High), Known: true}
}

// Window bounds, in whole seconds of the provider's clock, the created
// time of any object the provider made between local times from and to,
// widened by margin on each side; with no answer seen yet, by unknown on
// each side instead.
func (c ProviderClock) Window(from, to time.Time, margin, unknown time.Duration) Window {
	if !c.Known {
		return Window{From: from.Add(-unknown).Truncate(time.Second), To: to.Add(unknown).Truncate(time.Second)}
	}
	return Window{From: from.Add(c.Low - margin).Truncate(time.Second), To: to.Add(c.High + margin).Truncate(time.Second)}
}

// Earliest is the earliest the provider's clock can read at local time t.
func (c ProviderClock) Earliest(t time.Time) time.Time { return t.Add(c.Low) }

// ProviderErrorKind classifies a provider failure by what the dispatcher
// must do about it.
type ProviderErrorKind string

const (
	// ProviderRateLimited: 429 for a rate or concurrency limit. Slow down,
	// retry the same key.
	ProviderRateLimited ProviderErrorKind = "rate_limited"
	// ProviderLockTimeout: 429 lock_timeout, an object lock. Retry soon.
	ProviderLockTimeout ProviderErrorKind = "lock_timeout"
	// ProviderNetwork: no answer (time-out, reset). The outcome is unknown;
	// the same key may be retried while the provider surely retains it.
	ProviderNetwork ProviderErrorKind = "network"
	// ProviderServer: a 5xx. Stripe stores it under the key: unknown.
	ProviderServer ProviderErrorKind = "server"
	// ProviderIdempotency: idempotency_error (key reused with other
	// parameters, or the same key still in flight). Unknown.
	ProviderIdempotency ProviderErrorKind = "idempotency"
	// ProviderCard: 402, the card was declined. Final for this method.
	ProviderCard ProviderErrorKind = "card"
	// ProviderInvalid: another 400. Final.
	ProviderInvalid ProviderErrorKind = "invalid"
	// ProviderAuth: 401/403, a configuration fault. Stop charging, alert.
	ProviderAuth ProviderErrorKind = "auth"
	// ProviderNotFound: 404, no such object.
	ProviderNotFound ProviderErrorKind = "not_found"
)

// ProviderError is one failed provider call.
type ProviderError struct {
	Kind        ProviderErrorKind
	HTTPStatus  int    // 0 when no answer came
	Type        string // the provider's error type
	Code        string // the provider's error code
	DeclineCode string
	Message     string
	// RateLimitReason is Stripe-Rate-Limited-Reason on a 429.
	RateLimitReason string
	// ShouldRetry is Stripe-Should-Retry, when the provider sent it.
	ShouldRetry *bool
	// RetryAfter is the provider's Retry-After, when it sent one.
	RetryAfter time.Duration
	RequestID  string
	// Payment is the PaymentIntent a card error names.
	Payment *Payment
	Err     error
}

func (e *ProviderError) Error() string {
	s := fmt.Sprintf("provider %s error", e.Kind)
	if e.HTTPStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d", e.HTTPStatus)
		if e.Code != "" {
			s += " " + e.Code
		}
		s += ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *ProviderError) Unwrap() error { return e.Err }

// Unknown reports whether the call may or may not have taken effect.
func (e *ProviderError) Unknown() bool {
	return e.Kind == ProviderNetwork || e.Kind == ProviderServer || e.Kind == ProviderIdempotency
}

// ProviderEvent is a verified event from the provider (a webhook), reduced
// to what floodgate acts on.
type ProviderEvent struct {
	ID      string
	Type    string
	Created time.Time
	// PaymentIntentID names the PaymentIntent concerned: the object of a
	// payment_intent.* event, the charge's PaymentIntent of a charge.*
	// event.
	PaymentIntentID string
	// Payment is the PaymentIntent of a payment_intent.* event.
	Payment *Payment
	// Amount is, for charge.refunded, the charge's total refunded so far
	// (not this refund's part), and for charge.dispute.*, the disputed
	// amount.
	Amount   int64
	Currency string
	// Metadata is the object's metadata: what it pays for (see RefOf).
	Metadata map[string]string
}

// Why an event was refused by an EventParser.
var (
	// ErrEventSignature: not signed with any configured secret. Answer
	// 400, change nothing.
	ErrEventSignature = errors.New("provider event: invalid signature")
	// ErrEventTimestamp: the signature is too old (or from the future).
	// Answer 400, change nothing.
	ErrEventTimestamp = errors.New("provider event: timestamp outside tolerance")
	// ErrEventVersion: signed correctly but rendered for an API version
	// the library may decode wrongly. Answer 500 (the provider retries)
	// and raise an alert: it must never be dropped silently.
	ErrEventVersion = errors.New("provider event: API version mismatch")
)

// EventParser verifies and decodes the provider's webhook deliveries.
type EventParser interface {
	// CheckHeader says, before any payload is read, whether the signature
	// header could verify one at all: well formed and within the
	// tolerance of now. It proves nothing about a payload (Parse does);
	// it lets the HTTP layer refuse a sender who holds no secret without
	// spending memory or time on its body. Errors wrap ErrEventSignature
	// or ErrEventTimestamp.
	CheckHeader(signature string) error
	// Parse verifies payload against the signature header and decodes
	// it. Errors wrap ErrEventSignature, ErrEventTimestamp or
	// ErrEventVersion, or say the payload could not be decoded.
	Parse(payload []byte, signature string) (*ProviderEvent, error)
}
