package stripe

import (
	"bytes"
	"encoding/json"
	"maps"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// paymentFrom is floodgate's view of a PaymentIntent. raw is the
// PaymentIntent's own JSON, when known: stripe-go drops the contents of
// next_action.use_stripe_sdk, which the browser needs for 3-D Secure, so
// next_action is taken from the raw JSON.
func paymentFrom(pi *stripe.PaymentIntent, raw []byte) *floodgate.Payment {
	p := &floodgate.Payment{
		ID:           pi.ID,
		Status:       floodgate.PaymentStatus(pi.Status),
		Amount:       pi.Amount,
		Currency:     string(pi.Currency),
		ClientSecret: pi.ClientSecret,
		Metadata:     maps.Clone(pi.Metadata),
		NextAction:   member(raw, "next_action"),
	}
	if pi.Created != 0 {
		p.Created = time.Unix(pi.Created, 0).UTC()
	}
	if e := pi.LastPaymentError; e != nil {
		p.FailureCode, p.DeclineCode = string(e.Code), string(e.DeclineCode)
		if e.PaymentMethod != nil {
			p.FailedPaymentMethod = e.PaymentMethod.ID
			if e.PaymentMethod.Card != nil {
				p.Fingerprint = e.PaymentMethod.Card.Fingerprint
			}
		}
	}
	if pm := pi.PaymentMethod; pm != nil {
		p.PaymentMethod = pm.ID
		if pm.Card != nil && pm.Card.Fingerprint != "" {
			p.Fingerprint = pm.Card.Fingerprint
		}
	}
	return p
}

// member returns the raw JSON of one member of the object raw, or nil when
// raw is not an object, lacks it, or holds null.
func member(raw []byte, name string) []byte {
	if len(raw) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	v := bytes.TrimSpace(obj[name])
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil
	}
	return bytes.Clone(v)
}

// errorPI is the raw PaymentIntent inside a Stripe error body
// ({"error": {"payment_intent": {...}}}).
func errorPI(body []byte) []byte {
	return member(member(body, "error"), "payment_intent")
}
