package httpapi

import (
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/floodgate/floodgate"
)

// maxWebhookBody bounds a provider event. The events floodgate applies
// carry one PaymentIntent, Charge or Dispute: a few KB as Stripe renders
// them (its own API fixtures are 1.2 KB, 3.2 KB and 1.4 KB before any
// value is filled in). The most an object can grow by is its metadata:
// 50 keys of up to 40 characters with values of up to 500, about 27 KB,
// which an event may carry twice (the object and its
// previous_attributes) and a Charge copies from its PaymentIntent. So
// the largest realistic event is below 100 KB, and 256 KiB leaves more
// than twice that. It is also what one unsigned sender can make the
// server hold per slot before its signature is checked, at most
// webhookConcurrency of them at once.
const maxWebhookBody = 256 << 10

// Defaults of Config.WebhookConcurrency and Config.WebhookReadTimeout.
const (
	// defaultWebhookConcurrency is far above what the provider sends at
	// once (a delivery is a few KB applied in one store write), and
	// bounds the memory of bodies in flight to 32 x 256 KiB = 8 MiB.
	defaultWebhookConcurrency = 32
	// defaultWebhookReadTimeout is long enough for a few KB on any link
	// the provider uses, and short enough that a sender trickling a body
	// holds a slot only briefly.
	defaultWebhookReadTimeout = 5 * time.Second
)

// webhookLinger is how long, after a webhook is answered without its body
// being read, the server goes on discarding what the client still sends
// before it closes the connection: long enough for the client to read the
// answer rather than a reset, too short to be held.
const webhookLinger = time.Second

// stripeWebhook verifies a provider event and applies it. Nothing of the
// body is read before the Stripe-Signature header has passed the cheap
// checks (well formed, fresh), the declared size is within
// maxWebhookBody and one of WebhookConcurrency slots is free; the body
// must then arrive within WebhookReadTimeout. A bad or stale signature is
// 400 and changes nothing; no free slot is 503 with Retry-After (the
// provider retries, so nothing is lost); an API version that does not
// match the pinned one is 500 (the provider keeps retrying while an alert
// metric rises) and is never dropped silently; an event for a payment
// floodgate does not know is 200 and ignored. It does not pass through
// the ingest queue, so donor traffic never sheds it.
func (s *Server) stripeWebhook(w http.ResponseWriter, r *http.Request) error {
	if s.Events == nil || s.Apply == nil {
		unread(w)
		return floodgate.Errorf(floodgate.ENOTFOUND, "Webhooks are not configured on this server.")
	}
	if err := s.Events.CheckHeader(r.Header.Get("Stripe-Signature")); err != nil {
		unread(w)
		if errors.Is(err, floodgate.ErrEventSignature) {
			s.webhookFailed("signature")
			return floodgate.Invalid("Stripe-Signature", "is missing or not of the form t=<unix seconds>,v1=<64 hex digits>")
		}
		return s.webhookRefused(err)
	}
	if r.ContentLength > maxWebhookBody {
		unread(w)
		s.webhookFailed("too_large")
		return floodgate.Errorf(floodgate.ETOOLARGE, "The event is larger than %d bytes.", maxWebhookBody)
	}
	select {
	case s.webhookSlots <- struct{}{}:
		defer func() { <-s.webhookSlots }()
	default:
		unread(w)
		s.webhookFailed("busy")
		return &floodgate.Error{Code: floodgate.EOVERLOADED, RetryAfter: time.Second,
			Message: "Too many provider events are being received at once; this one is not read and will be delivered again."}
	}
	body, err := s.readWebhook(w, r)
	if err != nil {
		return err
	}
	ev, err := s.Events.Parse(body, r.Header.Get("Stripe-Signature"))
	if err != nil {
		return s.webhookRefused(err)
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

// readWebhook reads a webhook body of at most maxWebhookBody bytes that
// must arrive within WebhookReadTimeout. A declared length is read into
// one buffer of that size; a chunked body grows to the limit at most.
func (s *Server) readWebhook(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.WebhookReadTimeout))
	var (
		body []byte
		err  error
	)
	if n := r.ContentLength; n >= 0 {
		body = make([]byte, n)
		_, err = io.ReadFull(r.Body, body)
	} else {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		// The whole body is in; the connection's own deadlines apply
		// again once this request is answered. Until then, none: a
		// deadline passing while the event is applied would cancel the
		// request's context in the middle of a store write.
		_ = rc.SetReadDeadline(time.Time{})
		return body, nil
	case errors.As(err, &tooBig):
		s.webhookFailed("too_large")
		return nil, floodgate.Errorf(floodgate.ETOOLARGE, "The event is larger than %d bytes.", maxWebhookBody)
	case errors.Is(err, os.ErrDeadlineExceeded):
		unread(w)
		s.webhookFailed("read")
		return nil, floodgate.Invalid("body", "did not arrive within %s", s.WebhookReadTimeout)
	default:
		unread(w)
		s.webhookFailed("read")
		return nil, floodgate.Invalid("body", "could not be read")
	}
}

// webhookRefused answers an event whose signature was refused, by the
// header check or by the verification of the body, and counts it.
func (s *Server) webhookRefused(err error) error {
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
	default:
		s.webhookFailed("decode")
		s.log.Warn("webhook could not be decoded", "err", err)
		return floodgate.Invalid("body", "is not an event floodgate can read")
	}
}

// unread prepares the answer to a request whose body was not read, or
// not read to its end. The connection is closed after the answer: the
// next bytes on it are the rest of this body, not another request. And
// the server goes on discarding them for webhookLinger at most, instead
// of until the connection's read deadline, so a client that trickles
// its body holds nothing.
func unread(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(webhookLinger))
}

func (s *Server) webhookFailed(reason string) {
	if s.Metrics != nil {
		s.Metrics.WebhookFailures.WithLabelValues(reason).Inc()
	}
}
