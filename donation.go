package floodgate

import (
	"encoding/json"
	"time"
)

// DonationStatus is where a gift stands. The public contract names these
// six values.
type DonationStatus string

const (
	// StatusAccepted: durable, waiting in line to be charged.
	StatusAccepted DonationStatus = "accepted"
	// StatusProcessing: claimed by a dispatcher; a charge is being attempted
	// (or its outcome is being established).
	StatusProcessing DonationStatus = "processing"
	// StatusRequiresAction: the bank asks the donor for 3-D Secure.
	StatusRequiresAction DonationStatus = "requires_action"
	// StatusSucceeded: charged.
	StatusSucceeded DonationStatus = "succeeded"
	// StatusFailed: declined; the donor may bring another payment method.
	StatusFailed DonationStatus = "failed"
	// StatusCanceled: canceled by the donor, or left in requires_action past
	// the action timeout.
	StatusCanceled DonationStatus = "canceled"
)

// Pending reports whether a gift in status s counts in a campaign's pending
// total (accepted and not yet settled).
func (s DonationStatus) Pending() bool {
	return s == StatusAccepted || s == StatusProcessing || s == StatusRequiresAction
}

// Final reports whether no further move is expected without the donor.
func (s DonationStatus) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// transitions lists, for each status, the statuses a donation may move to.
// State only moves forward, with one deliberate exception: a failed gift
// goes back to accepted, in its old place in line, when the donor brings
// another payment method.
var transitions = map[DonationStatus][]DonationStatus{
	StatusAccepted:       {StatusProcessing, StatusCanceled},
	StatusProcessing:     {StatusSucceeded, StatusFailed, StatusRequiresAction, StatusCanceled, StatusAccepted},
	StatusRequiresAction: {StatusSucceeded, StatusFailed, StatusCanceled},
	StatusFailed:         {StatusAccepted, StatusSucceeded},
	StatusSucceeded:      nil,
	StatusCanceled:       {StatusSucceeded},
}

// CanMove reports whether a donation may go from status from to status to.
// A charge that the provider reports as succeeded is always recorded, even
// after a local cancel or failure: money that moved must be counted.
func CanMove(from, to DonationStatus) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Declaration is a donor's tax-relief declaration, stored with the gift.
type Declaration struct {
	Scheme      string `json:"scheme"`
	TextVersion string `json:"text_version"`
	FirstName   string `json:"first_name"`
	LastName    string `json:"last_name"`
	House       string `json:"house,omitempty"`
	Postcode    string `json:"postcode,omitempty"`
}

// Donation is one gift, from acceptance to settlement. What the donor gave
// is the donation's own; how it is being paid (status, key generation,
// PaymentIntent, claim, reversals) is its payment order's, read with it.
type Donation struct {
	ID string
	// Seq is the place in the one global line, assigned at acceptance; the
	// donation's order shares it.
	Seq            int64
	CampaignID     string
	IdempotencyKey string
	// RequestHash is the SHA-256 of the request's canonical form: the same
	// key with another hash is an idempotency mismatch.
	RequestHash   []byte
	Amount        int64
	Currency      string
	Email         string
	Name          string
	PaymentMethod string
	Anonymous     bool
	Message       string
	Declaration   *Declaration
	// ClientAddr is the address the request came from (for abuse limits).
	ClientAddr string

	// OrderID is the payment order that pays for the gift. The fields
	// from Status to Disputed, and UpdatedAt, are that order's, each as
	// PaymentOrder says; PaymentMethod is its current one. Refunded and
	// Disputed come off the campaign's raised.
	OrderID         string
	Status          DonationStatus
	Attempt         int
	KeySince        *time.Time
	PaymentIntentID string
	ClientSecret    string
	NextAction      json.RawMessage
	FailureCode     string
	ActionSince     *time.Time
	ClaimedBy       string
	LeaseUntil      *time.Time
	Refunded        int64
	Disputed        int64

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Reversal is money the provider takes back from a succeeded gift.
type Reversal string

const (
	ReversalRefund  Reversal = "refund"
	ReversalDispute Reversal = "dispute"
)

// Net is what a gift brings in: its amount less what was refunded or
// disputed.
func (d *Donation) Net() int64 { return d.Amount - min(d.Amount, d.Refunded+d.Disputed) }

// StatusChange is one line of a payment order's history: a donation's
// history is its order's. The first line is the acceptance, at the order's
// creation (a store may read it from there rather than keep it).
type StatusChange struct {
	Status      DonationStatus
	At          time.Time
	FailureCode string
	Note        string
}

// TotalsDelta is what moving a gift of amount from one status to another
// does to its campaign's totals. Every store applies exactly this, in the
// transaction that moves the gift.
type TotalsDelta struct {
	Raised       int64
	Donations    int64
	Pending      int64
	PendingCount int64
	// Waiting counts gifts in status accepted (the line to be charged).
	Waiting int64
}

// Delta returns the change to totals when a gift of amount moves from
// status from to status to. An empty from means the gift is new.
func Delta(from, to DonationStatus, amount int64) TotalsDelta {
	var d TotalsDelta
	d.add(from, amount, -1)
	d.add(to, amount, +1)
	return d
}

func (d *TotalsDelta) add(s DonationStatus, amount, sign int64) {
	if s == "" {
		return
	}
	if s.Pending() {
		d.Pending += sign * amount
		d.PendingCount += sign
	}
	if s == StatusAccepted {
		d.Waiting += sign
	}
	if s == StatusSucceeded {
		d.Raised += sign * amount
		d.Donations += sign
	}
}

// Add accumulates e into d.
func (d *TotalsDelta) Add(e TotalsDelta) {
	d.Raised += e.Raised
	d.Donations += e.Donations
	d.Pending += e.Pending
	d.PendingCount += e.PendingCount
	d.Waiting += e.Waiting
}

// Zero reports whether d changes nothing.
func (d TotalsDelta) Zero() bool { return d == TotalsDelta{} }

// NewOrder is the payment order made for d when it is accepted at at:
// waiting in line at d's place, to be charged d's amount with d's payment
// method, in the current request format.
func NewOrder(d *Donation, at time.Time) PaymentOrder {
	return PaymentOrder{ID: OrderIDOf(d.ID), Seq: d.Seq, Kind: KindDonation, PaysFor: d.ID, CampaignID: d.CampaignID,
		Amount: d.Amount, Currency: d.Currency, PaymentMethod: d.PaymentMethod, ClientAddr: d.ClientAddr,
		Status: StatusAccepted, Format: CurrentFormat, CreatedAt: at, UpdatedAt: at}
}

// Accepted sets d, given its place in line, as a store answers a gift it
// accepts at at: waiting with its new order (NewOrder).
func (d *Donation) Accepted(at time.Time) {
	o := NewOrder(d, at)
	d.CreatedAt = at
	d.ShowOrder(&o)
}

// ShowOrder sets d's payment fields to its order o's: a donation as a
// store answers it.
func (d *Donation) ShowOrder(o *PaymentOrder) {
	d.OrderID, d.PaymentMethod, d.ClientAddr, d.Status = o.ID, o.PaymentMethod, o.ClientAddr, o.Status
	d.Attempt, d.KeySince, d.PaymentIntentID, d.ClientSecret = o.Attempt, o.KeySince, o.PaymentIntentID, o.ClientSecret
	d.NextAction, d.FailureCode, d.ActionSince = o.NextAction, o.FailureCode, o.ActionSince
	d.ClaimedBy, d.LeaseUntil = o.ClaimedBy, o.LeaseUntil
	d.Refunded, d.Disputed, d.UpdatedAt = o.Refunded, o.Disputed, o.UpdatedAt
}
