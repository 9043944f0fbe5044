package stripe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
)

// DefaultTimeout bounds one attempt when Options.HTTPClient is not given.
// The dispatcher's context usually bounds it sooner.
const DefaultTimeout = 30 * time.Second

// maxIdempotencyKey is Stripe's limit on an Idempotency-Key.
const maxIdempotencyKey = 255

// Options configure a Client.
type Options struct {
	// SecretKey is the account's secret (sk_...) or restricted (rk_...)
	// key.
	SecretKey string
	// APIBase is the API's base URL; empty means Stripe's own. Point it at
	// the sandbox or any Stripe-compatible server.
	APIBase string
	// HTTPClient sends the requests; by default one with Timeout. Its
	// transport is wrapped so that net/http never replays a request by
	// itself.
	HTTPClient *http.Client
	// Timeout bounds one attempt when HTTPClient is nil (default 30s).
	Timeout time.Duration
	// Logger receives stripe-go's own messages at debug level; default
	// none.
	Logger *slog.Logger
	// Clock is this process's clock, against which Clock bounds the
	// provider's; default floodgate.SystemClock.
	Clock floodgate.Clock
}

// Client is floodgate.Provider over stripe-go: one HTTP attempt per call,
// failures classified as *floodgate.ProviderError.
type Client struct {
	api *stripe.Client
	log *slog.Logger
	tr  *transport
}

var _ floodgate.Provider = (*Client)(nil)

// New returns a Client for the account of o.SecretKey.
func New(o Options) (*Client, error) {
	key := strings.TrimSpace(o.SecretKey)
	switch {
	case key == "":
		return nil, errors.New("stripe: a secret key is required")
	case strings.HasPrefix(key, "pk_"):
		return nil, errors.New("stripe: a publishable key (pk_...) cannot make server calls; use the secret key (sk_...)")
	}
	if o.APIBase != "" {
		u, err := url.Parse(o.APIBase)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("stripe: API base %q is not an http(s) URL", o.APIBase)
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var hc http.Client
	if o.HTTPClient != nil {
		hc = *o.HTTPClient
	} else {
		hc.Timeout = o.Timeout
		if hc.Timeout == 0 {
			hc.Timeout = DefaultTimeout
		}
	}
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	clock := o.Clock
	if clock == nil {
		clock = floodgate.SystemClock{}
	}
	tr := &transport{base: base, now: clock.Now}
	hc.Transport = tr
	cfg := &stripe.BackendConfig{
		HTTPClient:        &hc,
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     leveled{log},
		EnableTelemetry:   stripe.Bool(false),
	}
	if o.APIBase != "" {
		cfg.URL = stripe.String(o.APIBase)
	}
	api := stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(cfg)))
	return &Client{api: api, log: log, tr: tr}, nil
}

// Clock bounds Stripe's clock from the Date of the answers seen so far.
func (c *Client) Clock() floodgate.ProviderClock { return c.tr.providerClock() }

// Charge creates and confirms a card-only PaymentIntent (no redirect
// methods, so no return_url) with r's metadata, or, when
// r.PaymentIntentID is set, confirms that PaymentIntent again with
// r.PaymentMethod. A decline is a ProviderError of kind ProviderCard whose
// Payment is the declined PaymentIntent. Stripe's refusal of a payment
// method already consumed by another PaymentIntent is of kind
// ProviderIdempotency: an unknown outcome, to be settled by a lookup.
func (c *Client) Charge(ctx context.Context, r floodgate.ChargeRequest) (*floodgate.Payment, error) {
	if err := checkCharge(r); err != nil {
		return nil, err
	}
	ctx, x := record(ctx)
	if r.PaymentIntentID != "" {
		p := &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String(r.PaymentMethod)}
		p.IdempotencyKey = stripe.String(r.IdempotencyKey)
		p.AddExpand("payment_method")
		pi, err := c.api.V1PaymentIntents.Confirm(ctx, r.PaymentIntentID, p)
		return c.payment(ctx, x, pi, err)
	}
	p := &stripe.PaymentIntentCreateParams{
		Amount:             stripe.Int64(r.Amount),
		Currency:           stripe.String(r.Currency),
		PaymentMethod:      stripe.String(r.PaymentMethod),
		Confirm:            stripe.Bool(true),
		PaymentMethodTypes: stripe.StringSlice([]string{"card"}),
		Metadata:           maps.Clone(r.Metadata),
	}
	if r.Description != "" {
		p.Description = stripe.String(r.Description)
	}
	p.IdempotencyKey = stripe.String(r.IdempotencyKey)
	p.AddExpand("payment_method")
	pi, err := c.api.V1PaymentIntents.Create(ctx, p)
	return c.payment(ctx, x, pi, err)
}

// checkCharge refuses a request that could not be sent safely; these are
// floodgate's own bugs, never worth a provider call.
func checkCharge(r floodgate.ChargeRequest) error {
	var missing []string
	if r.IdempotencyKey == "" {
		missing = append(missing, "idempotency key")
	}
	if r.PaymentMethod == "" {
		missing = append(missing, "payment method")
	}
	if r.PaymentIntentID == "" {
		if ref := floodgate.RefOf(r.Metadata); ref.PaysFor == "" && ref.Order == "" {
			missing = append(missing, "metadata naming what it pays for")
		}
		if r.Amount <= 0 || r.Currency == "" {
			missing = append(missing, "amount and currency")
		}
	}
	if len(missing) > 0 {
		return &floodgate.ProviderError{Kind: floodgate.ProviderInvalid, Message: "charge request lacks " + strings.Join(missing, ", ")}
	}
	if len(r.IdempotencyKey) > maxIdempotencyKey {
		return &floodgate.ProviderError{Kind: floodgate.ProviderInvalid, Message: fmt.Sprintf("idempotency key longer than %d characters", maxIdempotencyKey)}
	}
	return nil
}

// Payment retrieves one PaymentIntent.
func (c *Client) Payment(ctx context.Context, id string) (*floodgate.Payment, error) {
	ctx, x := record(ctx)
	p := &stripe.PaymentIntentRetrieveParams{}
	p.AddExpand("payment_method")
	pi, err := c.api.V1PaymentIntents.Retrieve(ctx, id, p)
	return c.payment(ctx, x, pi, err)
}

// FindPayments returns one page of the PaymentIntents created in the
// window (whole seconds, both ends included), 100 a page, newest first,
// after q.After, keeping those whose metadata holds q.Metadata: one request
// to Stripe, so that the caller paces every page. It never uses Search,
// whose index lags.
func (c *Client) FindPayments(ctx context.Context, q floodgate.PaymentQuery) (floodgate.PaymentPage, error) {
	ctx, x := record(ctx)
	p := &stripe.PaymentIntentListParams{}
	p.Limit = stripe.Int64(100)
	p.Single = true
	if q.After != "" {
		p.StartingAfter = stripe.String(q.After)
	}
	if !q.CreatedFrom.IsZero() || !q.CreatedTo.IsZero() {
		p.CreatedRange = &stripe.RangeQueryParams{}
		if !q.CreatedFrom.IsZero() {
			p.CreatedRange.GreaterThanOrEqual = q.CreatedFrom.Unix()
		}
		if !q.CreatedTo.IsZero() {
			p.CreatedRange.LesserThanOrEqual = q.CreatedTo.Unix()
		}
	}
	p.AddExpand("data.payment_method")
	l := c.api.V1PaymentIntents.List(ctx, p)
	if err := l.Err(); err != nil {
		return floodgate.PaymentPage{}, c.fail(ctx, x, err)
	}
	page := floodgate.PaymentPage{More: l.Meta().HasMore}
	for _, pi := range l.Data() {
		page.Last = pi.ID
		var raw []byte
		if pi.LastResponse != nil {
			raw = pi.LastResponse.RawJSON
		}
		if p := paymentFrom(pi, raw); q.Matches(p) {
			page.Payments = append(page.Payments, p)
		}
	}
	return page, nil
}

// CancelPayment cancels a PaymentIntent that awaits the donor (reason
// abandoned). A PaymentIntent that can no longer be canceled is a
// ProviderError of kind ProviderInvalid whose Payment shows its status.
func (c *Client) CancelPayment(ctx context.Context, id, idempotencyKey string) (*floodgate.Payment, error) {
	if len(idempotencyKey) > maxIdempotencyKey {
		return nil, &floodgate.ProviderError{Kind: floodgate.ProviderInvalid, Message: fmt.Sprintf("idempotency key longer than %d characters", maxIdempotencyKey)}
	}
	ctx, x := record(ctx)
	p := &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")}
	if idempotencyKey != "" {
		p.IdempotencyKey = stripe.String(idempotencyKey)
	}
	p.AddExpand("payment_method")
	pi, err := c.api.V1PaymentIntents.Cancel(ctx, id, p)
	return c.payment(ctx, x, pi, err)
}

// RefundPayment refunds a PaymentIntent in full under idempotencyKey,
// with reason duplicate.
func (c *Client) RefundPayment(ctx context.Context, paymentIntentID, idempotencyKey string) (string, error) {
	if len(idempotencyKey) > maxIdempotencyKey {
		return "", &floodgate.ProviderError{Kind: floodgate.ProviderInvalid, Message: fmt.Sprintf("idempotency key longer than %d characters", maxIdempotencyKey)}
	}
	ctx, x := record(ctx)
	p := &stripe.RefundCreateParams{PaymentIntent: stripe.String(paymentIntentID), Reason: stripe.String(string(stripe.RefundReasonDuplicate))}
	if idempotencyKey != "" {
		p.IdempotencyKey = stripe.String(idempotencyKey)
	}
	r, err := c.api.V1Refunds.Create(ctx, p)
	if err != nil {
		return "", c.fail(ctx, x, err)
	}
	return r.ID, nil
}

// payment turns a stripe-go result into floodgate's.
func (c *Client) payment(ctx context.Context, x *exchange, pi *stripe.PaymentIntent, err error) (*floodgate.Payment, error) {
	if err != nil {
		return nil, c.fail(ctx, x, err)
	}
	var raw []byte
	if pi.LastResponse != nil {
		raw = pi.LastResponse.RawJSON
	}
	return paymentFrom(pi, raw), nil
}

// leveled passes stripe-go's log lines to slog at debug level: the adapter
// returns every failure, and its caller logs it with more context.
type leveled struct{ log *slog.Logger }

func (l leveled) logf(ctx context.Context, format string, v []any) {
	if l.log.Enabled(ctx, slog.LevelDebug) {
		l.log.DebugContext(ctx, "stripe-go: "+fmt.Sprintf(format, v...))
	}
}

func (l leveled) Debugf(ctx context.Context, format string, v ...any) { l.logf(ctx, format, v) }
func (l leveled) Infof(ctx context.Context, format string, v ...any)  { l.logf(ctx, format, v) }
func (l leveled) Warnf(ctx context.Context, format string, v ...any)  { l.logf(ctx, format, v) }
func (l leveled) Errorf(ctx context.Context, format string, v ...any) { l.logf(ctx, format, v) }
