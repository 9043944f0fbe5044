package stripe_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sandbox"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

const key = "sk_test_floodgate_adapter"

// clock is moved by hand.
type clock = clocktest.Manual

// start runs a sandbox behind a real HTTP server and returns it with a
// Client pointed at it.
func start(tb testing.TB, opts sandbox.Options) (*sandbox.Server, *fgstripe.Client, *clock, string) {
	tb.Helper()
	c := clocktest.New(time.Now().UTC().Truncate(time.Second))
	if opts.Clock == nil {
		opts.Clock = c
	}
	s, err := sandbox.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	if err := s.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	return s, client(tb, ts.URL, key), c, ts.URL
}

func client(tb testing.TB, base, secret string) *fgstripe.Client {
	tb.Helper()
	c, err := fgstripe.New(fgstripe.Options{SecretKey: secret, APIBase: base})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func gift(donation, pm, idem string) floodgate.ChargeRequest {
	return floodgate.ChargeRequest{Amount: 2500, Currency: "eur", PaymentMethod: pm, IdempotencyKey: idem,
		Description: "Gift " + donation, Metadata: map[string]string{"campaign": "demo", floodgate.MetaDonation: donation}}
}

func asProviderError(tb testing.TB, err error) *floodgate.ProviderError {
	tb.Helper()
	var pe *floodgate.ProviderError
	if !errors.As(err, &pe) {
		tb.Fatalf("error %v (%T) is not a ProviderError", err, err)
	}
	return pe
}

func TestCharge(t *testing.T) {
	s, c, _, base := start(t, sandbox.Options{})
	ctx := context.Background()
	p, err := c.Charge(ctx, gift("don_1", "pm_card_visa", "don_1:1"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != floodgate.PaymentSucceeded || p.Amount != 2500 || p.Currency != "eur" || p.DonationID() != "don_1" ||
		p.Metadata["campaign"] != "demo" || p.Fingerprint == "" || p.Created.IsZero() || p.NextAction != nil {
		t.Errorf("payment = %+v", p)
	}
	got, err := c.Payment(ctx, p.ID)
	if err != nil || got.ID != p.ID || got.Fingerprint != p.Fingerprint || !got.Created.Equal(p.Created) {
		t.Errorf("Payment = %+v, %v", got, err)
	}

	auth, err := c.Charge(ctx, gift("don_2", "pm_card_authenticationRequired", "don_2:1"))
	if err != nil || auth.Status != floodgate.PaymentRequiresAction || !strings.Contains(string(auth.NextAction), base+"/_sandbox/3ds/"+auth.ID) {
		t.Fatalf("3-D Secure: %+v, %v", auth, err)
	}
	// The declined card comes back as a card error carrying the
	// PaymentIntent; confirming it with another card succeeds.
	_, err = c.Charge(ctx, gift("don_3", "pm_card_chargeDeclinedInsufficientFunds", "don_3:1"))
	pe := asProviderError(t, err)
	if pe.Kind != floodgate.ProviderCard || pe.Payment == nil || pe.Payment.DeclineCode != "insufficient_funds" || pe.Payment.Fingerprint == "" {
		t.Fatalf("decline: %+v", pe)
	}
	retried, err := c.Charge(ctx, floodgate.ChargeRequest{PaymentIntentID: pe.Payment.ID, PaymentMethod: "pm_card_visa", IdempotencyKey: "don_3:2"})
	if err != nil || retried.ID != pe.Payment.ID || retried.Status != floodgate.PaymentSucceeded {
		t.Errorf("retry after decline: %+v, %v", retried, err)
	}
	if l := s.Ledger(); len(l.PaymentIntents) != 3 || len(l.ChargedTwice) != 0 {
		t.Errorf("ledger: %+v", l.Counts)
	}
}

func TestErrorKinds(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		opts   sandbox.Options
		call   func(c *fgstripe.Client, s *sandbox.Server) error
		kind   floodgate.ProviderErrorKind
		status int
		code   string
		check  func(t *testing.T, pe *floodgate.ProviderError)
	}{
		{name: "card", call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Charge(ctx, gift("d", "pm_card_chargeDeclinedFraudulent", "k"))
			return err
		}, kind: floodgate.ProviderCard, status: 402, code: "card_declined", check: func(t *testing.T, pe *floodgate.ProviderError) {
			if pe.DeclineCode != "fraudulent" || pe.Type != "card_error" || pe.Payment == nil {
				t.Errorf("%+v", pe)
			}
		}},
		{name: "rate limited", opts: sandbox.Options{RateLimit: 1}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, _ = c.Payment(ctx, "pi_first")
			_, err := c.Payment(ctx, "pi_second")
			return err
		}, kind: floodgate.ProviderRateLimited, status: 429, code: "rate_limit", check: func(t *testing.T, pe *floodgate.ProviderError) {
			if pe.RateLimitReason != "global-rate" {
				t.Errorf("reason %q", pe.RateLimitReason)
			}
		}},
		{name: "server", opts: sandbox.Options{FailRate: 1}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Charge(ctx, gift("d", "pm_card_visa", "k"))
			return err
		}, kind: floodgate.ProviderServer, status: 500, check: func(t *testing.T, pe *floodgate.ProviderError) {
			if pe.ShouldRetry == nil || *pe.ShouldRetry || pe.Type != "api_error" {
				t.Errorf("%+v", pe)
			}
		}},
		{name: "unavailable", opts: sandbox.Options{Outage: sandbox.OutageUnavailable}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Payment(ctx, "pi_x")
			return err
		}, kind: floodgate.ProviderServer, status: 503},
		{name: "network", opts: sandbox.Options{LoseRate: 1}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Charge(ctx, gift("d", "pm_card_visa", "k"))
			return err
		}, kind: floodgate.ProviderNetwork},
		{name: "connection reset", opts: sandbox.Options{Outage: sandbox.OutageReset}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Payment(ctx, "pi_x")
			return err
		}, kind: floodgate.ProviderNetwork},
		{name: "idempotency mismatch", call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, _ = c.Charge(ctx, gift("d", "pm_card_visa", "k"))
			_, err := c.Charge(ctx, gift("d", "pm_card_mastercard", "k"))
			return err
		}, kind: floodgate.ProviderIdempotency, status: 400},
		{name: "not found", call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Payment(ctx, "pi_nope")
			return err
		}, kind: floodgate.ProviderNotFound, status: 404, code: "resource_missing"},
		{name: "invalid", call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Charge(ctx, floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("d"), Amount: 10, Currency: "eur", PaymentMethod: "pm_card_visa", IdempotencyKey: "k"})
			return err
		}, kind: floodgate.ProviderInvalid, status: 400, code: "amount_too_small"},
		{name: "unexpected state", call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			p, err := c.Charge(ctx, gift("d", "pm_card_visa", "k"))
			if err != nil {
				return err
			}
			_, err = c.CancelPayment(ctx, p.ID, "cancel")
			return err
		}, kind: floodgate.ProviderInvalid, status: 400, code: "payment_intent_unexpected_state", check: func(t *testing.T, pe *floodgate.ProviderError) {
			if pe.Payment == nil || pe.Payment.Status != floodgate.PaymentSucceeded {
				t.Errorf("payment %+v", pe.Payment)
			}
		}},
		{name: "auth", opts: sandbox.Options{APIKeys: []string{"sk_test_other"}}, call: func(c *fgstripe.Client, _ *sandbox.Server) error {
			_, err := c.Payment(ctx, "pi_x")
			return err
		}, kind: floodgate.ProviderAuth, status: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, _, _ := start(t, tt.opts)
			pe := asProviderError(t, tt.call(c, s))
			if pe.Kind != tt.kind || pe.HTTPStatus != tt.status || (tt.code != "" && pe.Code != tt.code) {
				t.Fatalf("got %s %d %q, want %s %d %q (%v)", pe.Kind, pe.HTTPStatus, pe.Code, tt.kind, tt.status, tt.code, pe)
			}
			if tt.status != 0 && (pe.RequestID == "" || !strings.HasPrefix(pe.RequestID, "req_") || pe.Message == "") {
				t.Errorf("request id %q, message %q", pe.RequestID, pe.Message)
			}
			if tt.status == 0 && pe.Err == nil {
				t.Error("a network error without its cause")
			}
			if tt.check != nil {
				tt.check(t, pe)
			}
		})
	}
}

// TestStripeAnswers covers answers Stripe gives and the sandbox does not:
// a server that answers exactly like Stripe in those cases.
func TestStripeAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		kind   floodgate.ProviderErrorKind
		check  func(t *testing.T, pe *floodgate.ProviderError)
	}{
		{name: "lock timeout", status: 429, header: map[string]string{"Stripe-Should-Retry": "true"},
			body: `{"error":{"type":"invalid_request_error","code":"lock_timeout","message":"This object cannot be accessed right now because another API request or Stripe process is currently accessing it."}}`,
			kind: floodgate.ProviderLockTimeout, check: func(t *testing.T, pe *floodgate.ProviderError) {
				if pe.ShouldRetry == nil || !*pe.ShouldRetry || pe.RateLimitReason != "" {
					t.Errorf("%+v", pe)
				}
			}},
		{name: "concurrency limit", status: 429, header: map[string]string{"Stripe-Rate-Limited-Reason": "global-concurrency", "Retry-After": "2"},
			body: `{"error":{"type":"invalid_request_error","code":"rate_limit","message":"Too many concurrent requests."}}`,
			kind: floodgate.ProviderRateLimited, check: func(t *testing.T, pe *floodgate.ProviderError) {
				if pe.RateLimitReason != "global-concurrency" || pe.RetryAfter != 2*time.Second {
					t.Errorf("%+v", pe)
				}
			}},
		{name: "key in use", status: 409, header: map[string]string{"Stripe-Should-Retry": "true"},
			body: `{"error":{"type":"idempotency_error","code":"idempotency_key_in_use","message":"There is currently another in-progress request using this Idempotent Key."}}`,
			kind: floodgate.ProviderIdempotency},
		{name: "forbidden", status: 403,
			body: `{"error":{"type":"invalid_request_error","message":"The provided key does not have the required permissions for this endpoint."}}`,
			kind: floodgate.ProviderAuth},
		{name: "proxy error page", status: 502, header: map[string]string{"Content-Type": "text/html"},
			body: `<html><body><h1>502 Bad Gateway</h1></body></html>`,
			kind: floodgate.ProviderServer, check: func(t *testing.T, pe *floodgate.ProviderError) {
				if pe.HTTPStatus != 502 || pe.Err == nil {
					t.Errorf("%+v", pe)
				}
			}},
		{name: "garbled success", status: 200, body: `{"id": "pi_`,
			kind: floodgate.ProviderServer, check: func(t *testing.T, pe *floodgate.ProviderError) {
				if pe.HTTPStatus != 200 || !pe.Unknown() {
					t.Errorf("%+v", pe)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.Header().Set("Request-Id", "req_canned")
				w.Header().Set("Content-Type", "application/json")
				for k, v := range tt.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer ts.Close()
			c := client(t, ts.URL, key)
			_, err := c.Charge(context.Background(), gift("d", "pm_card_visa", "k"))
			pe := asProviderError(t, err)
			if pe.Kind != tt.kind || pe.RequestID != "req_canned" {
				t.Fatalf("got %+v, want kind %s", pe, tt.kind)
			}
			if tt.check != nil {
				tt.check(t, pe)
			}
		})
	}
}

func TestNoHiddenRetries(t *testing.T) {
	// A server that reads each request and hangs up without answering:
	// every call must reach it exactly once, whether the connection was
	// fresh or reused, and whatever stripe-go or net/http would like.
	var posts atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(404)
			_, _ = io.WriteString(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such payment_intent: 'x'"}}`)
			return
		}
		posts.Add(1)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer ts.Close()
	c := client(t, ts.URL, key)
	ctx := context.Background()
	for i := range 3 {
		_, _ = c.Payment(ctx, "pi_x") // leaves a keep-alive connection to reuse
		_, err := c.Charge(ctx, gift("d", "pm_card_visa", fmt.Sprintf("k%d", i)))
		if pe := asProviderError(t, err); pe.Kind != floodgate.ProviderNetwork {
			t.Fatalf("kind %s", pe.Kind)
		}
		if got := posts.Load(); got != int64(i+1) {
			t.Fatalf("after %d calls the server saw %d", i+1, got)
		}
	}
}

func TestContext(t *testing.T) {
	_, c, _, base := start(t, sandbox.Options{Latency: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Charge(ctx, gift("d", "pm_card_visa", "k"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline: %v", err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := c.Payment(ctx2, "pi_x"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
	// The client's own time-out is the network's failure, not the caller's.
	slow, err := fgstripe.New(fgstripe.Options{SecretKey: key, APIBase: base, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = slow.Payment(context.Background(), "pi_x")
	if pe := asProviderError(t, err); pe.Kind != floodgate.ProviderNetwork {
		t.Errorf("time-out: %+v", pe)
	}
}

func TestFindPayments(t *testing.T) {
	s, c, clk, _ := start(t, sandbox.Options{})
	ctx := context.Background()
	begin := clk.Now()
	const n = 230
	for i := range n {
		clk.Advance(time.Second)
		pm := "pm_card_visa"
		if i%10 == 0 {
			pm = "pm_card_chargeDeclined"
		}
		_, _ = c.Charge(ctx, gift(fmt.Sprintf("don_%d", i%50), pm, fmt.Sprintf("k%d", i)))
	}
	all, err := floodgate.AllPayments(ctx, c, floodgate.PaymentQuery{CreatedFrom: begin, CreatedTo: clk.Now()})
	if err != nil || len(all) != n {
		t.Fatalf("all: %d, %v", len(all), err)
	}
	seen := map[string]bool{}
	for i, p := range all {
		if seen[p.ID] {
			t.Fatalf("%s listed twice", p.ID)
		}
		seen[p.ID] = true
		if i > 0 && p.Created.After(all[i-1].Created) {
			t.Fatal("not newest first")
		}
		if p.Fingerprint == "" {
			t.Errorf("%s without fingerprint", p.ID)
		}
	}
	// Sub-second bounds include their whole second.
	mid, err := floodgate.AllPayments(ctx, c, floodgate.PaymentQuery{CreatedFrom: begin.Add(10*time.Second + 300*time.Millisecond), CreatedTo: begin.Add(19*time.Second + 900*time.Millisecond)})
	if err != nil || len(mid) != 10 {
		t.Errorf("10 seconds: %d, %v", len(mid), err)
	}
	mine, err := floodgate.AllPayments(ctx, c, floodgate.PaymentQuery{CreatedFrom: begin, Metadata: floodgate.DonationLookup("don_0")})
	if err != nil || len(mine) != 5 {
		t.Errorf("don_0: %d, %v", len(mine), err)
	}
	for _, p := range mine {
		if p.DonationID() != "don_0" || p.Status != floodgate.PaymentRequiresPaymentMethod || p.DeclineCode != "generic_decline" {
			t.Errorf("don_0 payment %+v", p)
		}
	}
	none, err := floodgate.AllPayments(ctx, c, floodgate.PaymentQuery{CreatedFrom: clk.Now().Add(time.Hour)})
	if err != nil || len(none) != 0 {
		t.Errorf("future window: %d, %v", len(none), err)
	}
	if got := s.Ledger().Counts.PaymentIntents; got != n {
		t.Errorf("ledger %d", got)
	}
}

func TestNew(t *testing.T) {
	for _, o := range []fgstripe.Options{
		{},
		{SecretKey: "pk_test_123"},
		{SecretKey: key, APIBase: "localhost:12111"},
	} {
		if _, err := fgstripe.New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if _, err := fgstripe.New(fgstripe.Options{SecretKey: key, HTTPClient: &http.Client{Timeout: time.Second}}); err != nil {
		t.Error(err)
	}
}
