package stripe

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/floodgate/floodgate"
)

// Why a webhook was refused: the domain's errors, so that callers need
// not know this adapter. Each is wrapped around stripe-go's more precise
// error.
var (
	ErrWebhookSignature  = floodgate.ErrEventSignature
	ErrWebhookTimestamp  = floodgate.ErrEventTimestamp
	ErrWebhookAPIVersion = floodgate.ErrEventVersion
)

// Webhooks is floodgate.EventParser for Stripe: it verifies deliveries
// with any of Secrets (more than one while a secret is rotated).
type Webhooks struct {
	Secrets []string
	// Tolerance bounds a signature's age; 0 is Stripe's 300 seconds.
	Tolerance time.Duration
}

var _ floodgate.EventParser = Webhooks{}

// Parse implements floodgate.EventParser.
func (w Webhooks) Parse(payload []byte, signature string) (*floodgate.ProviderEvent, error) {
	ev, err := ParseWebhook(payload, signature, w.Secrets, w.Tolerance)
	if err != nil {
		return nil, err
	}
	return DecodeEvent(ev)
}

// ParseWebhook verifies payload against its Stripe-Signature header with
// each secret in turn (several while a secret is rotated) and decodes the
// event. tolerance bounds the signature's age (0: Stripe's 300 seconds). An
// event signed correctly but rendered for another API version is returned
// with an error wrapping ErrWebhookAPIVersion.
func ParseWebhook(payload []byte, header string, secrets []string, tolerance time.Duration) (stripe.Event, error) {
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance
	}
	opts := webhook.ConstructEventOptions{Tolerance: tolerance, IgnoreAPIVersionMismatch: true}
	tried := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		tried = true
		ev, err := webhook.ConstructEventWithOptions(payload, header, secret, opts)
		switch {
		case err == nil:
			if !compatible(stripe.APIVersion, ev.APIVersion) {
				return ev, fmt.Errorf("%w: event has %q, stripe-go expects %q", ErrWebhookAPIVersion, ev.APIVersion, stripe.APIVersion)
			}
			return ev, nil
		case errors.Is(err, webhook.ErrNoValidSignature):
			continue // Perhaps the next secret signed it.
		case errors.Is(err, webhook.ErrTooOld):
			return stripe.Event{}, fmt.Errorf("%w: %w", ErrWebhookTimestamp, err)
		case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader):
			return stripe.Event{}, fmt.Errorf("%w: %w", ErrWebhookSignature, err)
		default:
			return stripe.Event{}, fmt.Errorf("stripe webhook: %w", err)
		}
	}
	if !tried {
		return stripe.Event{}, fmt.Errorf("%w: no webhook secret configured", ErrWebhookSignature)
	}
	return stripe.Event{}, fmt.Errorf("%w: %w", ErrWebhookSignature, webhook.ErrNoValidSignature)
}

// compatible is stripe-go's rule for event versions: same release train
// ("2026-03-25.dahlia" and "2026-05-01.dahlia" match), and for a preview
// pin the very same version.
func compatible(pinned, event string) bool {
	_, train, ok := strings.Cut(pinned, ".")
	_, eventTrain, eventOK := strings.Cut(event, ".")
	if !ok || !eventOK {
		return false
	}
	if train == "preview" {
		return pinned == event
	}
	return train == eventTrain
}

// Event is what floodgate needs of a Stripe event.
type Event = floodgate.ProviderEvent

// DecodeEvent reads what floodgate needs from ev. Events of other types
// come back with only ID, Type and Created.
func DecodeEvent(ev stripe.Event) (*Event, error) {
	out := &Event{ID: ev.ID, Type: string(ev.Type), Created: time.Unix(ev.Created, 0).UTC()}
	if ev.Data == nil {
		return out, nil
	}
	raw := []byte(ev.Data.Raw)
	switch {
	case strings.HasPrefix(out.Type, "payment_intent."):
		var pi stripe.PaymentIntent
		if err := json.Unmarshal(raw, &pi); err != nil {
			return nil, fmt.Errorf("stripe webhook: decoding %s: %w", out.Type, err)
		}
		out.Payment = paymentFrom(&pi, raw)
		out.PaymentIntentID, out.Amount, out.Currency = pi.ID, pi.Amount, string(pi.Currency)
		out.DonationID = pi.Metadata["donation_id"]
	case strings.HasPrefix(out.Type, "charge.dispute."):
		var d stripe.Dispute
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("stripe webhook: decoding %s: %w", out.Type, err)
		}
		if d.PaymentIntent != nil {
			out.PaymentIntentID = d.PaymentIntent.ID
		}
		out.Amount, out.Currency = d.Amount, string(d.Currency)
		out.DonationID = d.Metadata["donation_id"]
	case strings.HasPrefix(out.Type, "charge."):
		var ch stripe.Charge
		if err := json.Unmarshal(raw, &ch); err != nil {
			return nil, fmt.Errorf("stripe webhook: decoding %s: %w", out.Type, err)
		}
		if ch.PaymentIntent != nil {
			out.PaymentIntentID = ch.PaymentIntent.ID
		}
		out.Amount, out.Currency = ch.AmountRefunded, string(ch.Currency)
		out.DonationID = ch.Metadata["donation_id"]
	}
	return out, nil
}
