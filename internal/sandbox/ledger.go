package sandbox

import (
	"maps"
	"slices"
	"time"

	"github.com/floodgate/floodgate"
)

// Ledger is every PaymentIntent the sandbox holds, grouped by the donation
// it names in metadata.donation_id: the proof that nothing was charged
// twice.
type Ledger struct {
	PaymentIntents []LedgerEntry `json:"payment_intents"`
	// ByDonation maps a donation id to its PaymentIntents, oldest first.
	ByDonation map[string][]string `json:"by_donation"`
	// ChargedTwice lists the donations with more than one succeeded
	// PaymentIntent; it must be empty.
	ChargedTwice []string `json:"charged_twice"`
	Counts       Counts   `json:"counts"`
}

// LedgerEntry is one PaymentIntent.
type LedgerEntry struct {
	ID             string    `json:"id"`
	Status         string    `json:"status"`
	Amount         int64     `json:"amount"`
	Currency       string    `json:"currency"`
	DonationID     string    `json:"donation_id,omitempty"`
	Created        time.Time `json:"created"`
	PaymentMethod  string    `json:"payment_method,omitempty"`
	Fingerprint    string    `json:"fingerprint,omitempty"`
	AmountRefunded int64     `json:"amount_refunded"`
	Disputed       bool      `json:"disputed"`
	// Attempts counts confirmations (one per card tried, plus 3-D Secure
	// restarts).
	Attempts int `json:"attempts"`
}

// Counts summarise what the sandbox saw and did.
type Counts struct {
	PaymentIntents int `json:"payment_intents"`
	Succeeded      int `json:"succeeded"`
	Canceled       int `json:"canceled"`
	RequiresAction int `json:"requires_action"`
	Donations      int `json:"donations"`
	ChargedTwice   int `json:"charged_twice"`

	// Requests counts authenticated API requests, RateLimited the 429s
	// among them.
	Requests          int64 `json:"requests"`
	RateLimited       int64 `json:"rate_limited"`
	Replays           int64 `json:"idempotent_replays"`
	IdempotencyErrors int64 `json:"idempotency_errors"`
	// ByEndpoint splits Requests by endpoint, named by method and route:
	// "POST /v1/payment_intents" is a create, "GET /v1/payment_intents" a
	// list page, "GET /v1/payment_intents/{id}" a retrieve. It shows what
	// a client spent its budget on; a 429 counts under the endpoint it
	// refused.
	ByEndpoint map[string]int64 `json:"by_endpoint"`
	// IdempotencyEvicted counts keys forgotten before their retention
	// because the store was full.
	IdempotencyEvicted int64 `json:"idempotency_evicted"`
	InjectedFailures   int64 `json:"injected_failures"`
	LostAnswers        int64 `json:"lost_answers"`
	Outage             int64 `json:"outage"`

	// Events counts the events emitted; EventsKept those GET /v1/events
	// can still list, EventsEvicted those forgotten past
	// Options.MaxEvents.
	Events int64 `json:"events"`
	// WebhookEvents counts the events emitted for delivery to the webhook
	// endpoint (of a type it is enabled for).
	WebhookEvents     int64 `json:"webhook_events"`
	EventsKept        int   `json:"events_kept"`
	EventsEvicted     int64 `json:"events_evicted"`
	WebhooksDelivered int64 `json:"webhooks_delivered"`
	WebhooksFailed    int64 `json:"webhook_attempts_failed"`
	WebhooksDropped   int64 `json:"webhooks_dropped"`
	WebhooksPending   int64 `json:"webhooks_pending"`
}

// Ledger returns the whole current ledger.
func (s *Server) Ledger() Ledger {
	return s.ledger("", true)
}

// ledger builds the ledger; donationID, when not empty, keeps only that
// donation's PaymentIntents, and entries false leaves the list out (the
// counts always cover everything).
func (s *Server) ledger(donationID string, entries bool) Ledger {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := Ledger{ByDonation: map[string][]string{}, ChargedTwice: []string{}, PaymentIntents: []LedgerEntry{}}
	c := s.stats
	c.ByEndpoint = maps.Clone(s.stats.ByEndpoint)
	if c.ByEndpoint == nil {
		c.ByEndpoint = map[string]int64{}
	}
	succeeded := map[string]int{}
	for _, pi := range s.order {
		did := pi.Metadata[floodgate.MetaDonation]
		switch pi.Status {
		case statusSucceeded:
			c.Succeeded++
			if did != "" {
				succeeded[did]++
			}
		case statusCanceled:
			c.Canceled++
		case statusRequiresAction:
			c.RequiresAction++
		}
		if donationID != "" && did != donationID {
			continue
		}
		if did != "" {
			l.ByDonation[did] = append(l.ByDonation[did], pi.ID)
		}
		if !entries {
			continue
		}
		e := LedgerEntry{
			ID: pi.ID, Status: pi.Status, Amount: pi.Amount, Currency: pi.Currency, DonationID: did,
			Created: time.Unix(pi.Created, 0).UTC(), PaymentMethod: pi.LastPM, Fingerprint: pi.Fingerprint,
			Disputed: pi.Dispute != nil, Attempts: pi.Attempts,
		}
		if pi.Charge != nil {
			e.AmountRefunded = pi.Charge.AmountRefunded
		}
		l.PaymentIntents = append(l.PaymentIntents, e)
	}
	donations := map[string]bool{}
	for _, pi := range s.order {
		if did := pi.Metadata[floodgate.MetaDonation]; did != "" {
			donations[did] = true
		}
	}
	for did, n := range succeeded {
		if n > 1 && (donationID == "" || did == donationID) {
			l.ChargedTwice = append(l.ChargedTwice, did)
		}
	}
	slices.Sort(l.ChargedTwice)
	c.PaymentIntents = len(s.pis)
	c.Donations = len(donations)
	for _, n := range succeeded {
		if n > 1 {
			c.ChargedTwice++
		}
	}
	c.IdempotencyEvicted = s.idem.evicted
	c.EventsKept, c.EventsEvicted = s.events.len(), s.events.evicted
	if h := s.hooks; h != nil {
		c.WebhooksDelivered = h.delivered.Load()
		c.WebhooksFailed = h.failed.Load()
		c.WebhooksDropped = h.dropped.Load()
		c.WebhooksPending = h.pending.Load()
	}
	l.Counts = c
	return l
}
