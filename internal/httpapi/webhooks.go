package httpapi

import (
	"errors"
	"io"
	"net/http"

	"github.com/floodgate/floodgate"
)

// maxWebhookBody bounds a provider event; Stripe's are a few KB.
const maxWebhookBody = 1 << 20

// stripeWebhook verifies a provider event and applies it. A bad or stale
// signature is 400 and changes nothing; an API version that does not match
// the pinned one is 500 (the provider keeps retrying while an alert metric
// rises) and is never dropped silently; an event for a payment floodgate
// does not know is 200 and ignored. It does not pass through the ingest
// queue, so donor traffic never sheds it.
func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) error {
	if s.Events == nil || s.Apply == nil {
		return floodgate.Errorf(floodgate.ENOTFOUND, "Webhooks are not configured on this server.")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		s.webhookFailed("too_large")
		return floodgate.Errorf(floodgate.ETOOLARGE, "The event is larger than %d bytes.", maxWebhookBody)
	} else if err != nil {
		return floodgate.Invalid("body", "could not be read")
	}
	ev, err := s.Events.Parse(body, r.Header.Get("Stripe-Signature"))
	switch {
	case errors.Is(err, floodgate.ErrEventSignature):
		s.webhookFailed("signature")
		return floodgate.Invalid("Stripe-Signature", "does not match any configured webhook secret")
	case errors.Is(err, floodgate.ErrEventTimestamp):
		s.webhookFailed("timestamp")
		return floodgate.Invalid("Stripe-Signature", "timestamp is outside the tolerance")
	case errors.Is(err, floodgate.ErrEventVersion):
		s.webhookFailed("api_version")
		s.log.Error("webhook refused: the endpoint's API version does not match the pinned one; events are NOT being applied", "err", err)
		return &floodgate.Error{Code: floodgate.EINTERNAL, Err: err}
	case err != nil:
		s.webhookFailed("decode")
		s.log.Warn("webhook could not be decoded", "err", err)
		return floodgate.Invalid("body", "is not an event floodgate can read")
	}
	applied, err := s.Apply(r.Context(), ev)
	if err != nil {
		s.webhookFailed("apply")
		return err
	}
	if s.Metrics != nil {
		outcome := "ignored"
		if applied {
			outcome = "applied"
		}
		s.Metrics.WebhookEvents.WithLabelValues(ev.Type, outcome).Inc()
	}
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "applied": applied})
	return nil
}

func (s *Server) webhookFailed(reason string) {
	if s.Metrics != nil {
		s.Metrics.WebhookFailures.WithLabelValues(reason).Inc()
	}
}
