package floodgate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// OrderKind names what a payment order pays for: the kind of intake it
// was made for (KindDonation: a gift, whose effect is on its campaign's
// totals, see EffectOf).
type OrderKind = IntakeKind

// noun names what an order of kind k pays for, in messages a client may
// read ("Donation is processing.").
func (k OrderKind) noun() string {
	if k == KindDonation {
		return "Donation"
	}
	return "Payment order"
}

// OrderStatus is where an order's payment stands. It takes the six values
// of DonationStatus, and CanMove is its state machine: a donation's status
// is its order's.
type OrderStatus = DonationStatus

// RequestFormat says which parameters the create request of a key
// generation carries. The provider compares a request retried under a key
// with the first one sent under it and refuses any difference
// (idempotency_error), so a key generation keeps the format it began with
// for its whole life: a new parameter belongs to a new format, used only
// by the generations begun after it.
type RequestFormat int

const (
	// FormatDonation is the request of the key generations begun before
	// payment orders: key floodgate-<donation id>-<attempt>, description
	// "Donation <id> to <campaign>", metadata campaign and donation_id.
	FormatDonation RequestFormat = 0
	// FormatOrder adds the order's kind and id to the metadata, and keys
	// the request by the order: floodgate-<order id>-<attempt>.
	FormatOrder RequestFormat = 1
	// CurrentFormat is the format of a key generation begun now.
	CurrentFormat = FormatOrder
)

// The metadata keys floodgate sets on a payment: every one is spelled here
// and nowhere else. A donation's payment always carries MetaDonation, the
// key a PaymentIntent made before payment orders is found by; from
// FormatOrder on it also carries MetaKind and MetaOrder, and an order of
// another kind carries those and MetaCampaign, with what it pays for under
// "<kind>_id".
const (
	MetaCampaign = "campaign"
	MetaDonation = "donation_id"
	MetaKind     = "kind"
	MetaOrder    = "order_id"
)

// paysForKey is the metadata key naming what an order of kind k pays for.
func paysForKey(k OrderKind) string {
	if k == KindDonation {
		return MetaDonation
	}
	return string(k) + "_id"
}

// kindPrefix is the id prefix of what an order of kind k pays for.
func kindPrefix(k OrderKind) string {
	if k == KindDonation {
		return DonationIDPrefix
	}
	return string(k) + "_"
}

// OrderIDOf is the id of the payment order that pays for paysFor (a
// donation's id): paysFor's body under the order prefix. One thing is paid
// for by one order, so each is found from the other by id alone; a store
// keeps no id of the order's own (nor an index of one) beside what it pays
// for.
func OrderIDOf(paysFor string) string {
	_, body, _ := strings.Cut(paysFor, "_")
	return OrderIDPrefix + body
}

// PaysForOf is the id of what order orderID pays for, given its kind: the
// inverse of OrderIDOf.
func PaysForOf(kind OrderKind, orderID string) string {
	return kindPrefix(kind) + strings.TrimPrefix(orderID, OrderIDPrefix)
}

// PaymentOrder is one payment: what is charged, how, under which key, and
// who holds it now. What it pays for (a donation) is apart; the order
// names it by kind and id, and the order's changes reach it only through
// EffectOf. The line of work waiting to be charged is the line of orders.
//
// What is charged (amount, currency, the campaign, the payer's address,
// the payment method first given) is fixed by what the order pays for: a
// store reads it from there, and keeps on the order only what the payment
// changes.
type PaymentOrder struct {
	// ID is OrderIDOf(PaysFor).
	ID string
	// Seq is the order's place in the one global line. A donation's order
	// shares the donation's seq.
	Seq     int64
	Kind    OrderKind
	PaysFor string
	// CampaignID is the campaign what the order pays for belongs to.
	CampaignID    string
	Amount        int64
	Currency      string
	PaymentMethod string
	// ClientAddr is where the payer's request came from (the card-testing
	// defence limits by it).
	ClientAddr string

	Status OrderStatus
	// Attempt counts idempotency-key generations: the provider key is
	// derived from the order and Attempt. It changes only when the payer
	// brings another payment method or a consistent lookup proved that no
	// payment exists for the old key.
	Attempt int
	// KeySince is when the current key was first sent; a key is surely
	// retained by the provider for 20 hours after it.
	KeySince *time.Time
	// Format is the current key generation's request format, fixed when
	// the generation began.
	Format          RequestFormat
	PaymentIntentID string
	ClientSecret    string
	// NextAction is the provider's next_action object, raw JSON.
	NextAction json.RawMessage
	// FailureCode is generic (card_declined, expired_card, ...), never a
	// fraud signal.
	FailureCode string
	// ActionSince is when the order entered requires_action.
	ActionSince *time.Time
	// ClaimedBy and LeaseUntil say which dispatcher holds a processing
	// order, and until when (on the store's clock).
	ClaimedBy  string
	LeaseUntil *time.Time
	// Token is the fencing token of the order's latest claim: every claim,
	// takeover and take-back issues a new one, and a write made under a
	// claim applies only while the order still holds that claim's token.
	Token int64

	// Refunded and Disputed are what the provider took back from a
	// succeeded order (cumulative).
	Refunded int64
	Disputed int64

	// UnknownFrom and UnknownTo are set while the outcome of the current
	// key generation is unknown (a stored 5xx, an idempotency error, a key
	// the provider may have forgotten) and sweeps establish it (see
	// Sweeps): any PaymentIntent the key made was created within them,
	// inclusive, in whole seconds of the provider's clock. Such an order
	// is processing, held by no claim and out of the workers' line until
	// a sweep or a webhook settles it or gives it a new key.
	UnknownFrom, UnknownTo *time.Time
	// Sweeps counts the complete sweeps that covered the window and found
	// no PaymentIntent for the order; SweptAt is when the last of them
	// started, on the provider's clock.
	Sweeps  int
	SweptAt *time.Time
	// UnknownCause is the class of the failure that hid the outcome
	// (Decision.Class: "server" for a stored 5xx, "idempotency", ...).
	UnknownCause string
	// Absences counts the new keys sweeps gave the order because none
	// found a payment, since the payer's last payment method: a hidden
	// outcome that is not the provider's own failure is not tried for
	// ever (see MaxAbsences).
	Absences int

	CreatedAt time.Time
	UpdatedAt time.Time
}

// ActionCursor is a place in the order ActionExpired returns orders in:
// after the order whose action began at Since with place in line Seq. The
// zero cursor is the start.
type ActionCursor struct {
	Since time.Time
	Seq   int64
}

// ActionCursorAfter is the cursor just after o.
func ActionCursorAfter(o *PaymentOrder) ActionCursor {
	c := ActionCursor{Seq: o.Seq}
	if o.ActionSince != nil {
		c.Since = *o.ActionSince
	}
	return c
}

// Net is what an order brings in: its amount less what was refunded or
// disputed.
func (o *PaymentOrder) Net() int64 { return o.Amount - min(o.Amount, o.Refunded+o.Disputed) }

// Claim names a dispatcher's hold on an order (its id and place in line)
// by the token its claim issued.
type Claim struct {
	Order string
	Seq   int64
	Token int64
}

// Claim is o's current claim.
func (o *PaymentOrder) Claim() Claim { return Claim{Order: o.ID, Seq: o.Seq, Token: o.Token} }

// Held reports whether the claim that issued token still holds o at now,
// the store's clock: o carries that token, is claimed, and its lease has
// not run out. A settlement, a defer or a new key made under a claim no
// longer held is refused; a newer claim, a settlement from elsewhere (a
// webhook) or a lapsed lease all end a hold.
func (o *PaymentOrder) Held(token int64, now time.Time) bool {
	return token != 0 && o.Token == token && o.ClaimedBy != "" && o.LeaseUntil != nil && o.LeaseUntil.After(now)
}

// IdempotencyKey is the provider key of o's current key generation.
func (o *PaymentOrder) IdempotencyKey() string {
	id := o.ID
	if o.Format == FormatDonation {
		id = o.PaysFor
	}
	return "floodgate-" + id + "-" + strconv.Itoa(o.Attempt)
}

// ChargeRequest is the request that charges o at its current key
// generation. It is made from the order alone, in the generation's
// format, so every retry of one key sends the same parameters.
func (o *PaymentOrder) ChargeRequest() ChargeRequest {
	return ChargeRequest{PaymentIntentID: o.PaymentIntentID, Amount: o.Amount, Currency: o.Currency,
		PaymentMethod: o.PaymentMethod, IdempotencyKey: o.IdempotencyKey(),
		Description: fmt.Sprintf("%s %s to %s", o.Kind.noun(), o.PaysFor, o.CampaignID),
		Metadata:    o.metadata()}
}

// metadata is what o's current key generation tells the provider it pays
// for.
func (o *PaymentOrder) metadata() map[string]string {
	md := map[string]string{MetaCampaign: o.CampaignID, paysForKey(o.Kind): o.PaysFor}
	if o.Format >= FormatOrder {
		md[MetaKind], md[MetaOrder] = string(o.Kind), o.ID
	}
	return md
}

// Lookup is the metadata every payment of o carries, whatever the format
// of the key generation that made it: what a lookup of o's payments at the
// provider matches on.
func (o *PaymentOrder) Lookup() map[string]string {
	if o.Kind == KindDonation {
		return map[string]string{MetaDonation: o.PaysFor}
	}
	return map[string]string{MetaOrder: o.ID}
}

// Owns reports whether p's metadata names o.
func (o *PaymentOrder) Owns(p *Payment) bool { return matches(p.Metadata, o.Lookup()) }

// matches reports whether md holds every pair of want.
func matches(md, want map[string]string) bool {
	for k, v := range want {
		if md[k] != v {
			return false
		}
	}
	return true
}

// PaymentRef is what a payment's metadata says it pays for.
type PaymentRef struct {
	// Kind is the order's kind: KindDonation for a payment made before
	// orders had kinds (it names only its donation).
	Kind OrderKind
	// Order is the order's id, when the metadata names it.
	Order string
	// PaysFor is the id of what the order pays for.
	PaysFor string
}

// RefOf reads what provider metadata says a payment pays for.
func RefOf(md map[string]string) PaymentRef {
	r := PaymentRef{Kind: OrderKind(md[MetaKind]), Order: md[MetaOrder]}
	if r.Kind == "" && md[MetaDonation] != "" {
		r.Kind = KindDonation
	}
	if r.Kind != "" {
		r.PaysFor = md[paysForKey(r.Kind)]
	}
	return r
}

// Effect is what a change of an order does to what it pays for, in the
// transaction that writes the change.
type Effect struct {
	// Campaign's totals gain Totals (KindDonation).
	Campaign string
	Totals   TotalsDelta
}

// Zero reports whether e changes nothing.
func (e Effect) Zero() bool { return e.Totals.Zero() }

// EffectOf decides what order o becoming next does to what it pays for:
// the one place each kind's effect on settle, fail and refund is written.
// A donation's campaign totals count the gift by where its order stands
// (see totalsOf), so the effect is the difference.
func EffectOf(o, next *PaymentOrder) Effect {
	switch o.Kind {
	case KindDonation:
		d := totalsOf(next)
		d.Add(totalsOf(o).neg())
		return Effect{Campaign: o.CampaignID, Totals: d}
	}
	return Effect{}
}

// totalsOf is what a donation's order counts in its campaign's totals:
// pending (its amount) while not settled, waiting while in line, raised
// (its net: a reversal may come before the success) once succeeded.
func totalsOf(o *PaymentOrder) TotalsDelta {
	var t TotalsDelta
	if o.Status.Pending() {
		t.Pending, t.PendingCount = o.Amount, 1
	}
	if o.Status == StatusAccepted {
		t.Waiting = 1
	}
	if o.Status == StatusSucceeded {
		t.Raised, t.Donations = o.Net(), 1
	}
	return t
}

func (d TotalsDelta) neg() TotalsDelta {
	return TotalsDelta{Raised: -d.Raised, Donations: -d.Donations, Pending: -d.Pending,
		PendingCount: -d.PendingCount, Waiting: -d.Waiting}
}

// OrderNotFound is the ENOTFOUND every store answers for an unknown order.
func OrderNotFound(id string) error {
	return Errorf(ENOTFOUND, "Payment order %q not found.", id)
}
