package sandbox

import (
	"maps"
	"net/url"
	"slices"
	"time"
)

// PaymentIntent statuses, with Stripe's values.
const (
	statusRequiresPaymentMethod = "requires_payment_method"
	statusRequiresConfirmation  = "requires_confirmation"
	statusRequiresAction        = "requires_action"
	statusRequiresCapture       = "requires_capture"
	statusCanceled              = "canceled"
	statusSucceeded             = "succeeded"
)

// paymentIntent is the sandbox's record of one PaymentIntent. It is also
// the journal's record, so its fields are exported to encoding/json.
type paymentIntent struct {
	Seq          int64             `json:"seq"`
	ID           string            `json:"id"`
	ClientSecret string            `json:"client_secret"`
	Amount       int64             `json:"amount"`
	Currency     string            `json:"currency"`
	Status       string            `json:"status"`
	Created      int64             `json:"created"`
	Description  string            `json:"description,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Types        []string          `json:"payment_method_types"`
	// APM is automatic_payment_methods: "" when off, else its
	// allow_redirects ("always" or "never").
	APM                string     `json:"apm,omitempty"`
	CaptureMethod      string     `json:"capture_method"`
	PaymentMethod      string     `json:"payment_method,omitempty"`
	ReturnURL          string     `json:"return_url,omitempty"`
	LastError          *lastError `json:"last_error,omitempty"`
	Charge             *charge    `json:"charge,omitempty"`
	ActionSource       string     `json:"action_source,omitempty"`
	CanceledAt         int64      `json:"canceled_at,omitempty"`
	CancellationReason string     `json:"cancellation_reason,omitempty"`
	AmountReceived     int64      `json:"amount_received,omitempty"`
	// Attempts counts confirmations, the ledger's view of retries.
	Attempts int `json:"attempts"`
	// LastPM and Fingerprint name the payment method and card of the
	// latest attempt; PaymentMethod is cleared by a decline, these stay.
	LastPM      string    `json:"last_pm,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Refunds     []*refund `json:"refunds,omitempty"`
	Dispute     *dispute  `json:"dispute,omitempty"`
}

// clone returns a copy of pi that shares nothing with it: the work of a
// request changes a PaymentIntent's charge in place (refunds, disputes), so
// a shallow copy would not keep the state from before.
func (pi *paymentIntent) clone() *paymentIntent {
	c := *pi
	c.Metadata = maps.Clone(pi.Metadata)
	c.Types = slices.Clone(pi.Types)
	if pi.LastError != nil {
		e := *pi.LastError
		c.LastError = &e
	}
	if pi.Charge != nil {
		ch := *pi.Charge
		c.Charge = &ch
	}
	if pi.Refunds != nil {
		c.Refunds = make([]*refund, len(pi.Refunds))
		for i, rf := range pi.Refunds {
			r := *rf
			r.Metadata = maps.Clone(rf.Metadata)
			c.Refunds[i] = &r
		}
	}
	if pi.Dispute != nil {
		d := *pi.Dispute
		c.Dispute = &d
	}
	return &c
}

// lastError is last_payment_error.
type lastError struct {
	Type          string `json:"type"`
	Code          string `json:"code"`
	DeclineCode   string `json:"decline_code,omitempty"`
	Message       string `json:"message"`
	Param         string `json:"param,omitempty"`
	Charge        string `json:"charge,omitempty"`
	PaymentMethod string `json:"payment_method,omitempty"`
}

// charge is a PaymentIntent's latest Charge.
type charge struct {
	ID             string `json:"id"`
	Status         string `json:"status"` // succeeded or failed
	Amount         int64  `json:"amount"`
	AmountRefunded int64  `json:"amount_refunded,omitempty"`
	Created        int64  `json:"created"`
	PaymentMethod  string `json:"payment_method"`
	Card           string `json:"card"`
	ExpMonth       int64  `json:"exp_month"`
	ExpYear        int64  `json:"exp_year"`
	FailureCode    string `json:"failure_code,omitempty"`
	FailureMessage string `json:"failure_message,omitempty"`
	Disputed       bool   `json:"disputed,omitempty"`
}

type refund struct {
	ID       string            `json:"id"`
	Amount   int64             `json:"amount"`
	Created  int64             `json:"created"`
	Reason   string            `json:"reason,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type dispute struct {
	ID      string `json:"id"`
	Amount  int64  `json:"amount"`
	Reason  string `json:"reason"`
	Created int64  `json:"created"`
}

// paymentMethod is a PaymentMethod made from a token or test card number.
// The magic ids (pm_card_visa, ...) are not stored: they are resolved from
// the card table each time and may be used any number of times.
type paymentMethod struct {
	ID       string            `json:"id"`
	Card     string            `json:"card"` // the test card's name
	Created  int64             `json:"created"`
	ExpMonth int64             `json:"exp_month"`
	ExpYear  int64             `json:"exp_year"`
	Name     string            `json:"name,omitempty"`
	Email    string            `json:"email,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// UsedBy is the PaymentIntent that first used this method; Stripe
	// refuses it for any other.
	UsedBy string `json:"used_by,omitempty"`

	magic bool
}

func (pm *paymentMethod) card() *testCard { return cardsByName[pm.Card] }

// clone returns a copy of pm that shares nothing with it.
func (pm *paymentMethod) clone() *paymentMethod {
	c := *pm
	c.Metadata = maps.Clone(pm.Metadata)
	return &c
}

// magicPM returns the unstored PaymentMethod behind a magic id.
func magicPM(id string, now time.Time) *paymentMethod {
	c := cardsByPM[id]
	if c == nil {
		return nil
	}
	return &paymentMethod{ID: id, Card: c.name, Created: now.Unix(), ExpMonth: 12, ExpYear: int64(now.Year() + 1), magic: true}
}

// expansion is which references a response shows as whole objects.
type expansion struct {
	paymentMethod bool
	latestCharge  bool
}

// renderPI is the PaymentIntent as Stripe shows it.
func (s *Server) renderPI(pi *paymentIntent, base string, ex expansion) map[string]any {
	now := s.clock.Now()
	var apm any
	if pi.APM != "" {
		apm = map[string]any{"allow_redirects": pi.APM, "enabled": true}
	}
	var pm any
	if pi.PaymentMethod != "" {
		pm = pi.PaymentMethod
		if ex.paymentMethod {
			if m := s.lookupPM(pi.PaymentMethod, now); m != nil {
				pm = s.renderPM(m)
			}
		}
	}
	var latest any
	if pi.Charge != nil {
		latest = pi.Charge.ID
		if ex.latestCharge {
			latest = s.renderCharge(pi)
		}
	}
	var lastErr any
	if e := pi.LastError; e != nil {
		le := map[string]any{"type": e.Type, "code": e.Code, "message": e.Message,
			"doc_url": "https://stripe.com/docs/error-codes/" + dashed(e.Code)}
		if e.DeclineCode != "" {
			le["decline_code"] = e.DeclineCode
		}
		if e.Param != "" {
			le["param"] = e.Param
		}
		if e.Charge != "" {
			le["charge"] = e.Charge
		}
		if m := s.lookupPM(e.PaymentMethod, now); m != nil {
			le["payment_method"] = s.renderPM(m)
		}
		lastErr = le
	}
	var next any
	if pi.Status == statusRequiresAction {
		next = map[string]any{
			"type": "use_stripe_sdk",
			"use_stripe_sdk": map[string]any{
				"type":      "three_d_secure_redirect",
				"stripe_js": base + "/_sandbox/3ds/" + pi.ID + "?client_secret=" + url.QueryEscape(pi.ClientSecret),
				"source":    pi.ActionSource,
			},
		}
	}
	var canceledAt, reason any
	if pi.CanceledAt != 0 {
		canceledAt = pi.CanceledAt
	}
	if pi.CancellationReason != "" {
		reason = pi.CancellationReason
	}
	var desc any
	if pi.Description != "" {
		desc = pi.Description
	}
	return map[string]any{
		"id":                                   pi.ID,
		"object":                               "payment_intent",
		"amount":                               pi.Amount,
		"amount_capturable":                    0,
		"amount_details":                       map[string]any{"tip": map[string]any{}},
		"amount_received":                      pi.AmountReceived,
		"application":                          nil,
		"application_fee_amount":               nil,
		"automatic_payment_methods":            apm,
		"canceled_at":                          canceledAt,
		"cancellation_reason":                  reason,
		"capture_method":                       pi.CaptureMethod,
		"client_secret":                        pi.ClientSecret,
		"confirmation_method":                  "automatic",
		"created":                              pi.Created,
		"currency":                             pi.Currency,
		"customer":                             nil,
		"description":                          desc,
		"excluded_payment_method_types":        nil,
		"last_payment_error":                   lastErr,
		"latest_charge":                        latest,
		"livemode":                             false,
		"metadata":                             orEmpty(pi.Metadata),
		"next_action":                          next,
		"on_behalf_of":                         nil,
		"payment_method":                       pm,
		"payment_method_configuration_details": nil,
		"payment_method_options": map[string]any{"card": map[string]any{
			"installments": nil, "mandate_options": nil, "network": nil, "request_three_d_secure": "automatic"}},
		"payment_method_types":        pi.Types,
		"processing":                  nil,
		"receipt_email":               nil,
		"review":                      nil,
		"setup_future_usage":          nil,
		"shipping":                    nil,
		"source":                      nil,
		"statement_descriptor":        nil,
		"statement_descriptor_suffix": nil,
		"status":                      pi.Status,
		"transfer_data":               nil,
		"transfer_group":              nil,
	}
}

// renderPM is the PaymentMethod as Stripe shows it.
func (s *Server) renderPM(pm *paymentMethod) map[string]any {
	c := pm.card()
	nullable := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	return map[string]any{
		"id":              pm.ID,
		"object":          "payment_method",
		"allow_redisplay": "unspecified",
		"billing_details": map[string]any{
			"address": map[string]any{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
			"email":   nullable(pm.Email), "name": nullable(pm.Name), "phone": nil,
		},
		"card": map[string]any{
			"brand":                c.brand,
			"checks":               map[string]any{"address_line1_check": nil, "address_postal_code_check": nil, "cvc_check": "pass"},
			"country":              c.country,
			"display_brand":        c.displayBrand(),
			"exp_month":            pm.ExpMonth,
			"exp_year":             pm.ExpYear,
			"fingerprint":          c.fingerprint(),
			"funding":              c.funding,
			"generated_from":       nil,
			"last4":                c.last4(),
			"networks":             map[string]any{"available": []string{c.brand}, "preferred": nil},
			"regulated_status":     "unregulated",
			"three_d_secure_usage": map[string]any{"supported": true},
			"wallet":               nil,
		},
		"created":  pm.Created,
		"customer": nil,
		"livemode": false,
		"metadata": orEmpty(pm.Metadata),
		"type":     "card",
	}
}

// renderCharge is the PaymentIntent's latest Charge as Stripe shows it.
func (s *Server) renderCharge(pi *paymentIntent) map[string]any {
	ch := pi.Charge
	c := cardsByName[ch.Card]
	succeeded := ch.Status == statusSucceeded
	var failureCode, failureMsg any
	if ch.FailureCode != "" {
		failureCode, failureMsg = ch.FailureCode, ch.FailureMessage
	}
	outcome := map[string]any{"network_status": "approved_by_network", "reason": nil, "risk_level": "normal",
		"seller_message": "Payment complete.", "type": "authorized"}
	if !succeeded {
		outcome = map[string]any{"network_status": "declined_by_network", "reason": failureCode, "risk_level": "normal",
			"seller_message": "The bank did not return any further details with this decline.", "type": "issuer_declined"}
	}
	captured := int64(0)
	if succeeded {
		captured = ch.Amount
	}
	var desc any
	if pi.Description != "" {
		desc = pi.Description
	}
	return map[string]any{
		"id":                  ch.ID,
		"object":              "charge",
		"amount":              ch.Amount,
		"amount_captured":     captured,
		"amount_refunded":     ch.AmountRefunded,
		"application":         nil,
		"application_fee":     nil,
		"balance_transaction": nil,
		"billing_details": map[string]any{
			"address": map[string]any{"city": nil, "country": nil, "line1": nil, "line2": nil, "postal_code": nil, "state": nil},
			"email":   nil, "name": nil, "phone": nil,
		},
		"captured":        succeeded,
		"created":         ch.Created,
		"currency":        pi.Currency,
		"customer":        nil,
		"description":     desc,
		"disputed":        ch.Disputed,
		"failure_code":    failureCode,
		"failure_message": failureMsg,
		"livemode":        false,
		"metadata":        orEmpty(pi.Metadata),
		"outcome":         outcome,
		"paid":            succeeded,
		"payment_intent":  pi.ID,
		"payment_method":  ch.PaymentMethod,
		"payment_method_details": map[string]any{
			"card": map[string]any{
				"brand": c.brand, "country": c.country, "exp_month": ch.ExpMonth, "exp_year": ch.ExpYear,
				"fingerprint": c.fingerprint(), "funding": c.funding, "last4": c.last4(),
			},
			"type": "card",
		},
		"refunded": succeeded && ch.AmountRefunded >= ch.Amount,
		"status":   ch.Status,
	}
}

func (s *Server) renderRefund(pi *paymentIntent, rf *refund) map[string]any {
	var reason any
	if rf.Reason != "" {
		reason = rf.Reason
	}
	return map[string]any{
		"id":                  rf.ID,
		"object":              "refund",
		"amount":              rf.Amount,
		"balance_transaction": nil,
		"charge":              pi.Charge.ID,
		"created":             rf.Created,
		"currency":            pi.Currency,
		"metadata":            orEmpty(rf.Metadata),
		"payment_intent":      pi.ID,
		"reason":              reason,
		"receipt_number":      nil,
		"status":              "succeeded",
	}
}

func (s *Server) renderDispute(pi *paymentIntent) map[string]any {
	d := pi.Dispute
	return map[string]any{
		"id":                   d.ID,
		"object":               "dispute",
		"amount":               d.Amount,
		"balance_transactions": []any{},
		"charge":               pi.Charge.ID,
		"created":              d.Created,
		"currency":             pi.Currency,
		"is_charge_refundable": false,
		"livemode":             false,
		"metadata":             map[string]string{},
		"payment_intent":       pi.ID,
		"reason":               d.Reason,
		"status":               "needs_response",
	}
}

// lookupPM finds a stored or magic PaymentMethod.
func (s *Server) lookupPM(id string, now time.Time) *paymentMethod {
	if id == "" {
		return nil
	}
	if pm := s.pms[id]; pm != nil {
		return pm
	}
	return magicPM(id, now)
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func dashed(code string) string {
	b := []byte(code)
	for i, c := range b {
		if c == '_' {
			b[i] = '-'
		}
	}
	return string(b)
}
