package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/floodgate/floodgate"
)

// Defaults, and the values the `floodgate sandbox` command starts with.
const (
	// DefaultRateLimit is Stripe's test-mode limit per account, requests
	// per second. Options.RateLimit 0 means no limit at all; the command
	// passes this value unless told otherwise.
	DefaultRateLimit = 25
	// DefaultIdempotencyRetention is how long Stripe keeps a key (at
	// least 24 hours).
	DefaultIdempotencyRetention = 24 * time.Hour
	// DefaultMaxIdempotencyKeys bounds the stored keys; each holds one
	// response body (a few KB), so the default costs about 1 GB at most.
	DefaultMaxIdempotencyKeys = 250_000
	// DefaultMaxPaymentIntents bounds the PaymentIntents kept.
	DefaultMaxPaymentIntents = 500_000
	// DefaultMaxEvents bounds the event log (GET /v1/events). Each event
	// holds a snapshot of its object (about 1.2 KB for a PaymentIntent),
	// so the default costs about 150 MB at most; a gift makes two or
	// three events, so it covers the last 30,000 gifts or more.
	DefaultMaxEvents = 100_000
	// DefaultWebhookQueue bounds the events waiting for delivery.
	DefaultWebhookQueue = 10_000
	// DefaultWebhookMaxAttempts bounds the deliveries of one event.
	DefaultWebhookMaxAttempts = 8
	// DefaultWebhookRetryBase is the wait before the first redelivery; it
	// doubles with every attempt, up to an hour.
	DefaultWebhookRetryBase = time.Second
)

// DefaultWebhookEvents are the event types a sandbox sends to its webhook
// endpoint unless told otherwise: every type it emits but
// payment_intent.created, which is only logged (a Stripe endpoint, too,
// receives only the types it is enabled for).
func DefaultWebhookEvents() []string {
	return []string{
		"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.requires_action",
		"payment_intent.canceled", "charge.refunded", "charge.dispute.created",
	}
}

// Outage is a simulated failure of the whole API (the /_sandbox/ pages keep
// working so that it can be switched off again).
type Outage string

const (
	// OutageNone serves normally.
	OutageNone Outage = ""
	// OutageUnavailable answers every API request 503 with an api_error.
	OutageUnavailable Outage = "unavailable"
	// OutageReset closes every API connection without an answer.
	OutageReset Outage = "reset"
)

// Options configure a sandbox. The zero value is a valid, fault-free,
// unlimited, in-memory sandbox.
type Options struct {
	// APIKeys, when not empty, are the only secret keys accepted;
	// otherwise any test key (sk_test_..., rk_test_...) is. Live keys are
	// always refused.
	APIKeys []string

	// RateLimit is the account's limit in API requests per second (token
	// bucket, burst = rate); 0 means none. Above it the API answers 429
	// with Stripe-Rate-Limited-Reason: global-rate.
	RateLimit float64
	// EndpointRateLimit, when positive, is a separate limit for each
	// endpoint (Stripe: 25/s), answered with reason endpoint-rate.
	EndpointRateLimit float64
	// Latency and a random LatencyJitter in [0, LatencyJitter) are waited
	// before each API request is handled.
	Latency, LatencyJitter time.Duration
	// ProcessingTime is how long a write takes to execute once its
	// idempotency key is reserved; while it runs, the same key answers 409.
	ProcessingTime time.Duration
	// FailRate is the probability of a 500 api_error before a write takes
	// effect: stored under the idempotency key, nothing charged.
	FailRate float64
	// LoseRate is the probability that a write's answer is lost after it
	// took effect: its response is stored under the key, then the
	// connection is closed without it.
	LoseRate float64
	// Outage starts the sandbox in a simulated outage.
	Outage Outage

	// IdempotencyRetention is how long a key is kept (default 24h); make
	// it short (2s) to test what happens after a key is forgotten.
	IdempotencyRetention time.Duration
	// MaxIdempotencyKeys bounds the stored keys (default 250,000).
	MaxIdempotencyKeys int
	// MaxPaymentIntents bounds the PaymentIntents kept (default 500,000).
	MaxPaymentIntents int
	// MaxEvents bounds the events kept for GET /v1/events (default
	// 100,000); beyond it the oldest is forgotten first. (Events more
	// than 30 days old are not listed either, as in Stripe.)
	MaxEvents int

	// WebhookURL, when set, receives signed Stripe events.
	WebhookURL string
	// WebhookSecret signs them (whsec_...); required with WebhookURL.
	WebhookSecret string
	// WebhookAPIVersion is the events' api_version (default: the version
	// the linked stripe-go pins).
	WebhookAPIVersion string
	// WebhookEvents are the event types sent to WebhookURL, as a Stripe
	// endpoint's enabled_events: exact types, or patterns with * ("*",
	// "payment_intent.*"). Default DefaultWebhookEvents(). Every event is
	// logged for GET /v1/events whatever this says.
	WebhookEvents []string
	// WebhookQueue bounds the events waiting for delivery (default 10,000).
	WebhookQueue int
	// WebhookMaxAttempts bounds the deliveries of one event (default 8).
	WebhookMaxAttempts int
	// WebhookRetryBase is the first redelivery delay (default 1s).
	WebhookRetryBase time.Duration
	// WebhookDuplicateRate is the probability that an event is delivered
	// twice, as Stripe may.
	WebhookDuplicateRate float64
	// WebhookShuffle delivers waiting events in random order.
	WebhookShuffle bool
	// WebhookClient sends the deliveries (default: 10s time-out).
	WebhookClient *http.Client

	// PublicURL is the sandbox's address as a browser reaches it, used in
	// the 3-D Secure links; by default the Host of each request.
	PublicURL string
	// StatePath, when set, is the journal that makes state survive a
	// restart.
	StatePath string
	// Seed seeds the fault and jitter randomness; 0 picks one at random.
	Seed uint64
	// Clock tells the time (creation times, key retention, the rate
	// limiter, webhook signatures); default floodgate.SystemClock.
	Clock floodgate.Clock
	// Logger receives the sandbox's logs; default none.
	Logger *slog.Logger

	// Arrive is for tests: when set, it is called with each API request
	// as it arrives, before the sandbox does anything with it (outage,
	// latency, limits, idempotency). It may block, to hold the request in
	// flight until the test releases it, or just note that it came.
	// Returning false drops the request: the connection is closed without
	// an answer and nothing is executed, as in OutageReset.
	Arrive func(*http.Request) bool
}

// withDefaults fills the zero fields and checks the rest.
func (o Options) withDefaults() (Options, error) {
	if o.IdempotencyRetention == 0 {
		o.IdempotencyRetention = DefaultIdempotencyRetention
	}
	if o.MaxIdempotencyKeys == 0 {
		o.MaxIdempotencyKeys = DefaultMaxIdempotencyKeys
	}
	if o.MaxPaymentIntents == 0 {
		o.MaxPaymentIntents = DefaultMaxPaymentIntents
	}
	if o.MaxEvents == 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.WebhookEvents == nil {
		o.WebhookEvents = DefaultWebhookEvents()
	}
	if o.WebhookQueue == 0 {
		o.WebhookQueue = DefaultWebhookQueue
	}
	if o.WebhookMaxAttempts == 0 {
		o.WebhookMaxAttempts = DefaultWebhookMaxAttempts
	}
	if o.WebhookRetryBase == 0 {
		o.WebhookRetryBase = DefaultWebhookRetryBase
	}
	if o.Clock == nil {
		o.Clock = floodgate.SystemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var errs []error
	if o.IdempotencyRetention < 0 {
		errs = append(errs, errors.New("IdempotencyRetention must not be negative"))
	}
	if o.MaxIdempotencyKeys < 0 || o.MaxPaymentIntents < 0 || o.MaxEvents < 0 || o.WebhookQueue < 0 || o.WebhookMaxAttempts < 0 {
		errs = append(errs, errors.New("MaxIdempotencyKeys, MaxPaymentIntents, MaxEvents, WebhookQueue and WebhookMaxAttempts must not be negative"))
	}
	for _, t := range o.WebhookEvents {
		if t == "" {
			errs = append(errs, errors.New("WebhookEvents must not hold an empty type"))
			break
		}
	}
	if o.WebhookURL != "" {
		if u, err := url.Parse(o.WebhookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("WebhookURL %q is not an http(s) URL", o.WebhookURL))
		}
		if o.WebhookSecret == "" {
			errs = append(errs, errors.New("WebhookSecret is required with WebhookURL"))
		}
	}
	if o.PublicURL != "" {
		if u, err := url.Parse(o.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("PublicURL %q is not an http(s) URL", o.PublicURL))
		}
	}
	if err := o.config().validate(); err != nil {
		errs = append(errs, err)
	}
	return o, errors.Join(errs...)
}

// config is the runtime-changeable part of the options.
func (o Options) config() Config {
	return Config{
		RateLimit:            o.RateLimit,
		EndpointRateLimit:    o.EndpointRateLimit,
		Latency:              o.Latency,
		LatencyJitter:        o.LatencyJitter,
		ProcessingTime:       o.ProcessingTime,
		FailRate:             o.FailRate,
		LoseRate:             o.LoseRate,
		Outage:               o.Outage,
		WebhookDuplicateRate: o.WebhookDuplicateRate,
		WebhookShuffle:       o.WebhookShuffle,
	}
}

// Config is the behaviour a running sandbox lets you change: through
// (*Server).SetConfig, or as JSON through GET and POST /_sandbox/config
// (durations as Go duration strings, "150ms"; a POST changes only the
// fields it names).
type Config struct {
	RateLimit            float64
	EndpointRateLimit    float64
	Latency              time.Duration
	LatencyJitter        time.Duration
	ProcessingTime       time.Duration
	FailRate             float64
	LoseRate             float64
	Outage               Outage
	WebhookDuplicateRate float64
	WebhookShuffle       bool
}

func (c Config) validate() error {
	var errs []error
	if c.RateLimit < 0 || c.EndpointRateLimit < 0 {
		errs = append(errs, errors.New("rate limits must not be negative"))
	}
	if c.Latency < 0 || c.LatencyJitter < 0 || c.ProcessingTime < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	for name, p := range map[string]float64{"fail_rate": c.FailRate, "lose_rate": c.LoseRate, "webhook_duplicate_rate": c.WebhookDuplicateRate} {
		if p < 0 || p > 1 {
			errs = append(errs, fmt.Errorf("%s must be between 0 and 1", name))
		}
	}
	switch c.Outage {
	case OutageNone, OutageUnavailable, OutageReset:
	default:
		errs = append(errs, fmt.Errorf("outage must be %q, %q or %q", OutageNone, OutageUnavailable, OutageReset))
	}
	return errors.Join(errs...)
}

// configJSON is Config as JSON: snake_case names, durations as strings.
type configJSON struct {
	RateLimit            float64 `json:"rate_limit"`
	EndpointRateLimit    float64 `json:"endpoint_rate_limit"`
	Latency              string  `json:"latency"`
	LatencyJitter        string  `json:"latency_jitter"`
	ProcessingTime       string  `json:"processing_time"`
	FailRate             float64 `json:"fail_rate"`
	LoseRate             float64 `json:"lose_rate"`
	Outage               Outage  `json:"outage"`
	WebhookDuplicateRate float64 `json:"webhook_duplicate_rate"`
	WebhookShuffle       bool    `json:"webhook_shuffle"`
}

// MarshalJSON writes the config with durations as strings.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(configJSON{
		RateLimit: c.RateLimit, EndpointRateLimit: c.EndpointRateLimit,
		Latency: c.Latency.String(), LatencyJitter: c.LatencyJitter.String(), ProcessingTime: c.ProcessingTime.String(),
		FailRate: c.FailRate, LoseRate: c.LoseRate, Outage: c.Outage,
		WebhookDuplicateRate: c.WebhookDuplicateRate, WebhookShuffle: c.WebhookShuffle,
	})
}

// UnmarshalJSON changes only the fields present in b, so that a POST can
// name just what it changes; unknown fields are an error.
func (c *Config) UnmarshalJSON(b []byte) error {
	var j configJSON
	cur, err := c.MarshalJSON()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(cur, &j); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	next := Config{
		RateLimit: j.RateLimit, EndpointRateLimit: j.EndpointRateLimit,
		FailRate: j.FailRate, LoseRate: j.LoseRate, Outage: j.Outage,
		WebhookDuplicateRate: j.WebhookDuplicateRate, WebhookShuffle: j.WebhookShuffle,
	}
	for _, d := range []struct {
		name string
		s    string
		dst  *time.Duration
	}{{"latency", j.Latency, &next.Latency}, {"latency_jitter", j.LatencyJitter, &next.LatencyJitter}, {"processing_time", j.ProcessingTime, &next.ProcessingTime}} {
		v, err := time.ParseDuration(d.s)
		if err != nil {
			return fmt.Errorf("%s: %w", d.name, err)
		}
		*d.dst = v
	}
	*c = next
	return nil
}
