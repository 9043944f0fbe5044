package stripe

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// fail turns a stripe-go failure into a *floodgate.ProviderError, or the
// context's error when the caller gave up.
func (c *Client) fail(ctx context.Context, x *exchange, err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		var h http.Header
		var raw []byte
		if se.LastResponse != nil {
			h, raw = se.LastResponse.Header, se.LastResponse.RawJSON
		}
		return classify(se, h, raw)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	status, h := x.get()
	pe := &floodgate.ProviderError{Kind: floodgate.ProviderNetwork, HTTPStatus: status, Err: err}
	if status != 0 {
		// An answer came but could not be read as Stripe's: judge by its
		// status. A readable-looking success that cannot be decoded left
		// the outcome unknown, like a 5xx.
		pe.RequestID = h.Get("Request-Id")
		readHeaders(pe, h)
		switch {
		case status >= 500 || status < 400:
			pe.Kind = floodgate.ProviderServer
		default:
			pe.Kind = kindOf(status, "", "")
		}
	}
	return pe
}

// classify maps one Stripe error answer.
func classify(se *stripe.Error, h http.Header, raw []byte) *floodgate.ProviderError {
	pe := &floodgate.ProviderError{
		Kind:        kindOf(se.HTTPStatusCode, string(se.Type), string(se.Code)),
		HTTPStatus:  se.HTTPStatusCode,
		Type:        string(se.Type),
		Code:        string(se.Code),
		DeclineCode: string(se.DeclineCode),
		Message:     se.Msg,
		RequestID:   se.RequestID,
		// Err stays nil: the fields say everything, and stripe-go's
		// error text embeds the whole PaymentIntent, client secret
		// included, which has no place in a log line.
	}
	if pe.Kind == floodgate.ProviderInvalid && reusedPaymentMethod(se.Msg) {
		// Stripe refuses a payment method that an earlier PaymentIntent
		// consumed. For floodgate that earlier PaymentIntent is most
		// likely this donation's own, made under a key Stripe has since
		// forgotten: the outcome is unknown, to be settled by a lookup,
		// never a failure. Stripe gives the error no code, hence the
		// message.
		pe.Kind = floodgate.ProviderIdempotency
	}
	readHeaders(pe, h)
	if se.PaymentIntent != nil && se.PaymentIntent.ID != "" {
		pe.Payment = paymentFrom(se.PaymentIntent, errorPI(raw))
	}
	return pe
}

// reusedPaymentMethod recognises Stripe's refusal of a consumed payment
// method, in its current and its older wording.
func reusedPaymentMethod(msg string) bool {
	return strings.Contains(msg, "PaymentMethod was previously used")
}

// kindOf is the table from Stripe's answer to what the dispatcher must do.
func kindOf(status int, typ, code string) floodgate.ProviderErrorKind {
	switch {
	case status == http.StatusTooManyRequests && code == string(stripe.ErrorCodeLockTimeout):
		return floodgate.ProviderLockTimeout
	case status == http.StatusTooManyRequests:
		return floodgate.ProviderRateLimited
	case typ == string(stripe.ErrorTypeIdempotency) || code == string(stripe.ErrorCodeIdempotencyKeyInUse):
		return floodgate.ProviderIdempotency
	case status >= 500:
		return floodgate.ProviderServer
	case status == http.StatusPaymentRequired || typ == string(stripe.ErrorTypeCard):
		return floodgate.ProviderCard
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return floodgate.ProviderAuth
	case status == http.StatusNotFound:
		return floodgate.ProviderNotFound
	}
	return floodgate.ProviderInvalid
}

// readHeaders copies Stripe's advice headers into pe.
func readHeaders(pe *floodgate.ProviderError, h http.Header) {
	if h == nil {
		return
	}
	switch h.Get("Stripe-Should-Retry") {
	case "true":
		pe.ShouldRetry = stripe.Bool(true)
	case "false":
		pe.ShouldRetry = stripe.Bool(false)
	}
	if pe.HTTPStatus == http.StatusTooManyRequests {
		pe.RateLimitReason = h.Get("Stripe-Rate-Limited-Reason")
	}
	pe.RetryAfter = retryAfter(h.Get("Retry-After"), time.Now())
}

// retryAfter reads a Retry-After header: seconds, or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
