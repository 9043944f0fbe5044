package stripe

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

// CheckHeader implements floodgate.EventParser with the system clock,
// the clock stripe-go verifies signatures against.
func (w Webhooks) CheckHeader(signature string) error {
	return CheckSignatureHeader(signature, w.Tolerance, time.Now())
}

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

// CheckSignatureHeader refuses a Stripe-Signature header that could not
// verify any payload, without looking at one. Stripe writes
// "t=<unix seconds>,v1=<hex HMAC-SHA256>[,v1=...][,v0=...]": one
// timestamp, and a 64-hex-digit v1 signature per secret being rolled.
// The header must be key=value pairs with a t, at least one such v1, and
// a timestamp within tolerance of now (0: Stripe's 300 seconds) in
// either direction. Everything else follows stripe-go's parser, so that
// no header it would verify is refused here: the last t counts, unknown
// keys (v0, the test-mode scheme) are ignored. The one deliberate
// difference: stripe-go only refuses an old timestamp, and one far in
// the future is refused here too, because nobody but a forger or a badly
// wrong clock writes it. Errors wrap ErrWebhookSignature or
// ErrWebhookTimestamp.
func CheckSignatureHeader(header string, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance
	}
	if header == "" {
		return fmt.Errorf("%w: %w", ErrWebhookSignature, webhook.ErrNotSigned)
	}
	var (
		at         int64
		stamped    bool
		signatures int
	)
	// The pairs are walked in place rather than split into a slice: the
	// header comes from anyone, before any secret is proven.
	for rest, more := header, true; more; {
		var pair string
		pair, rest, more = strings.Cut(rest, ",")
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return fmt.Errorf("%w: %w: %q is not key=value", ErrWebhookSignature, webhook.ErrInvalidHeader, truncate(pair, 32))
		}
		switch key {
		case "t":
			// The last t counts, as in stripe-go.
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: %w: the timestamp is not a number", ErrWebhookSignature, webhook.ErrInvalidHeader)
			}
			at, stamped = n, true
		case "v1":
			if isSignature(value) {
				signatures++
			}
		}
	}
	if !stamped {
		return fmt.Errorf("%w: %w: no timestamp", ErrWebhookSignature, webhook.ErrInvalidHeader)
	}
	if signatures == 0 {
		return fmt.Errorf("%w: %w: no v1 signature of 64 hex digits", ErrWebhookSignature, webhook.ErrNoValidSignature)
	}
	// The bounds are computed from now, so that no timestamp, however
	// large or negative, overflows the comparison.
	tol := int64(tolerance / time.Second)
	if at < now.Unix()-tol || at > now.Unix()+tol {
		return fmt.Errorf("%w: %w: signed at %d, now is %d", ErrWebhookTimestamp, webhook.ErrTooOld, at, now.Unix())
	}
	return nil
}

// isSignature reports whether s is a hex SHA-256, the length of every v1
// signature.
func isSignature(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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
		out.Metadata = pi.Metadata
	case strings.HasPrefix(out.Type, "charge.dispute."):
		var d stripe.Dispute
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("stripe webhook: decoding %s: %w", out.Type, err)
		}
		if d.PaymentIntent != nil {
			out.PaymentIntentID = d.PaymentIntent.ID
		}
		out.Amount, out.Currency = d.Amount, string(d.Currency)
		out.Metadata = d.Metadata
	case strings.HasPrefix(out.Type, "charge."):
		var ch stripe.Charge
		if err := json.Unmarshal(raw, &ch); err != nil {
			return nil, fmt.Errorf("stripe webhook: decoding %s: %w", out.Type, err)
		}
		if ch.PaymentIntent != nil {
			out.PaymentIntentID = ch.PaymentIntent.ID
		}
		out.Amount, out.Currency = ch.AmountRefunded, string(ch.Currency)
		out.Metadata = ch.Metadata
	}
	return out, nil
}
