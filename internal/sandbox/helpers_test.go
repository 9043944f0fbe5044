package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"

	"github.com/stripe/stripe-go/v85"

	"github.com/floodgate/floodgate"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

const testKey = "sk_test_floodgate_sandbox"

// testClock is moved by hand, so that key retention, rate limits and
// creation windows never depend on how fast the machine is.
type testClock = clocktest.Manual

func newTestClock() *testClock { return clocktest.New(time.Now().UTC().Truncate(time.Second)) }

// env is a sandbox behind a real HTTP server, with a raw stripe-go client
// and floodgate's adapter pointed at it.
type env struct {
	s     *Server
	url   string
	clock *testClock
	api   *stripe.Client
	pay   *fgstripe.Client
}

func newEnv(tb testing.TB, opts Options) *env {
	tb.Helper()
	clock, _ := opts.Clock.(*testClock)
	if opts.Clock == nil {
		clock = newTestClock()
		opts.Clock = clock
	}
	s, err := New(opts)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		tb.Fatalf("Start: %v", err)
	}
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return &env{s: s, url: ts.URL, clock: clock, api: rawClient(ts.URL, testKey), pay: adapter(tb, ts.URL, testKey)}
}

// rawClient is stripe-go itself, retries off, for what the adapter does
// not expose (headers, refunds, payment methods, lists).
func rawClient(base, key string) *stripe.Client {
	return stripe.NewClient(key, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(base),
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})))
}

func adapter(tb testing.TB, base, key string) *fgstripe.Client {
	tb.Helper()
	c, err := fgstripe.New(fgstripe.Options{SecretKey: key, APIBase: base, Timeout: 20 * time.Second})
	if err != nil {
		tb.Fatalf("adapter: %v", err)
	}
	return c
}

// charge asks the adapter for one gift.
func (e *env) charge(tb testing.TB, donation, pm, key string) (*floodgate.Payment, error) {
	tb.Helper()
	return e.pay.Charge(context.Background(), floodgate.ChargeRequest{
		Metadata: floodgate.DonationLookup(donation), Amount: 2500, Currency: "eur", PaymentMethod: pm, IdempotencyKey: key,
	})
}

// providerError asserts that err is a ProviderError of kind.
func providerError(tb testing.TB, err error, kind floodgate.ProviderErrorKind) *floodgate.ProviderError {
	tb.Helper()
	var pe *floodgate.ProviderError
	if !errors.As(err, &pe) {
		tb.Fatalf("error %v (%T) is not a ProviderError", err, err)
	}
	if pe.Kind != kind {
		tb.Fatalf("kind = %s, want %s (%v)", pe.Kind, kind, err)
	}
	return pe
}

// do sends one raw HTTP request and returns status, headers and the
// decoded JSON body.
func (e *env) do(tb testing.TB, method, path, key, idemKey string, form url.Values) (int, http.Header, map[string]any) {
	tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.url+path, body)
	if err != nil {
		tb.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	var v map[string]any
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &v); err != nil {
			tb.Fatalf("%s %s: bad JSON %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, resp.Header, v
}

// errorBody returns the "error" member of a Stripe error body.
func errorBody(tb testing.TB, v map[string]any) map[string]any {
	tb.Helper()
	e, ok := v["error"].(map[string]any)
	if !ok {
		tb.Fatalf("no Stripe error in %v", v)
	}
	return e
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stripeJS returns the 3-D Secure link of a payment's next_action.
func stripeJS(tb testing.TB, p *floodgate.Payment) string {
	tb.Helper()
	var na struct {
		Type         string `json:"type"`
		UseStripeSDK struct {
			Type     string `json:"type"`
			StripeJS string `json:"stripe_js"`
			Source   string `json:"source"`
		} `json:"use_stripe_sdk"`
	}
	if err := json.Unmarshal(p.NextAction, &na); err != nil {
		tb.Fatalf("next_action %q: %v", p.NextAction, err)
	}
	if na.Type != "use_stripe_sdk" || na.UseStripeSDK.Type != "three_d_secure_redirect" || !strings.HasPrefix(na.UseStripeSDK.Source, "src_") {
		tb.Fatalf("next_action = %s", p.NextAction)
	}
	return na.UseStripeSDK.StripeJS
}
