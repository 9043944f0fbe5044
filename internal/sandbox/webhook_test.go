package sandbox

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/floodgate/floodgate"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

const testSecret = "whsec_floodgate_test"

// delivery is one webhook request as the endpoint received it.
type delivery struct {
	payload   []byte
	signature string
}

// sink is a webhook endpoint that records deliveries and answers 500 to
// the first failFirst of them (or to all, when failFirst < 0).
type sink struct {
	mu        sync.Mutex
	got       []delivery
	attempts  int
	failFirst int
	url       string
}

func newSink(tb testing.TB, failFirst int) *sink {
	tb.Helper()
	k := &sink{failFirst: failFirst}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		k.mu.Lock()
		defer k.mu.Unlock()
		k.attempts++
		if k.failFirst < 0 || k.attempts <= k.failFirst {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		k.got = append(k.got, delivery{payload: body, signature: r.Header.Get("Stripe-Signature")})
	}))
	tb.Cleanup(ts.Close)
	k.url = ts.URL
	return k
}

func (k *sink) deliveries() []delivery {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]delivery(nil), k.got...)
}

// events waits for n deliveries and parses them as floodgate will.
func (k *sink) events(tb testing.TB, n int) []stripe.Event {
	tb.Helper()
	eventually(tb, "webhook deliveries", func() bool { return len(k.deliveries()) >= n })
	var out []stripe.Event
	for _, d := range k.deliveries() {
		ev, err := fgstripe.ParseWebhook(d.payload, d.signature, []string{testSecret}, 0)
		if err != nil {
			tb.Fatalf("delivery does not verify: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func TestWebhooks(t *testing.T) {
	k := newSink(t, 0)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret})
	ctx := context.Background()

	ok, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = e.charge(t, "don_2", "pm_card_chargeDeclined", "don_2:1")
	auth, err := e.charge(t, "don_3", "pm_card_authenticationRequired", "don_3:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.pay.CancelPayment(ctx, auth.ID, "cancel"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(ok.ID), Amount: stripe.Int64(500)}); err != nil {
		t.Fatal(err)
	}
	if status, _, body := e.do(t, http.MethodPost, "/_sandbox/payment_intents/"+ok.ID+"/dispute", "", "", url.Values{"reason": {"fraudulent"}}); status != 200 || body["object"] != "dispute" {
		t.Fatalf("dispute: %d %v", status, body)
	}

	want := map[string]string{
		"payment_intent.succeeded":       ok.ID,
		"payment_intent.payment_failed":  "",
		"payment_intent.requires_action": auth.ID,
		"payment_intent.canceled":        auth.ID,
		"charge.refunded":                ok.ID,
		"charge.dispute.created":         ok.ID,
	}
	events := k.events(t, len(want))
	seen := map[string]bool{}
	for _, ev := range events {
		if ev.Object != "event" || ev.Livemode || ev.APIVersion != stripe.APIVersion || ev.Created == 0 || len(ev.ID) < 10 {
			t.Errorf("event envelope: %+v", ev)
		}
		if seen[ev.ID] {
			t.Errorf("event %s delivered twice", ev.ID)
		}
		seen[ev.ID] = true
		d, err := fgstripe.DecodeEvent(ev)
		if err != nil {
			t.Fatalf("decode %s: %v", ev.Type, err)
		}
		pi, known := want[d.Type]
		if !known {
			t.Errorf("unexpected event %s", d.Type)
			continue
		}
		if pi != "" && d.PaymentIntentID != pi {
			t.Errorf("%s names %s, want %s", d.Type, d.PaymentIntentID, pi)
		}
		switch d.Type {
		case "payment_intent.succeeded":
			if d.Payment.Status != floodgate.PaymentSucceeded || d.Metadata[floodgate.MetaDonation] != "don_1" || ev.Request == nil || ev.Request.IdempotencyKey != "don_1:1" {
				t.Errorf("succeeded event: %+v %+v", d, ev.Request)
			}
		case "payment_intent.payment_failed":
			if d.Payment.DeclineCode != "generic_decline" || d.Metadata[floodgate.MetaDonation] != "don_2" {
				t.Errorf("failed event: %+v", d.Payment)
			}
		case "payment_intent.requires_action":
			if d.Payment.NextAction == nil {
				t.Error("requires_action event without next_action")
			}
		case "charge.refunded":
			if d.Amount != 500 || d.Metadata[floodgate.MetaDonation] != "don_1" {
				t.Errorf("refund event: %+v", d)
			}
		case "charge.dispute.created":
			if d.Amount != 2500 {
				t.Errorf("dispute event: %+v", d)
			}
		}
	}
	if len(events) != len(want) {
		t.Errorf("%d events, want %d", len(events), len(want))
	}
	eventually(t, "delivery counts", func() bool { return e.s.Ledger().Counts.WebhooksDelivered == int64(len(want)) })
	// payment_intent.created, one per PaymentIntent, is logged but not
	// sent: the endpoint is not enabled for it by default.
	if c := e.s.Ledger().Counts; c.WebhooksPending != 0 || c.Events != int64(len(want)+3) || c.EventsKept != len(want)+3 {
		t.Errorf("counts %+v", c)
	}
}

func TestWebhookRetries(t *testing.T) {
	k := newSink(t, 2)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret, WebhookRetryBase: 5 * time.Millisecond})
	if _, err := e.charge(t, "don_1", "pm_card_visa", "k"); err != nil {
		t.Fatal(err)
	}
	evs := k.events(t, 1)
	if evs[0].Type != "payment_intent.succeeded" {
		t.Errorf("event %s", evs[0].Type)
	}
	eventually(t, "counts", func() bool {
		c := e.s.Ledger().Counts
		return c.WebhooksDelivered == 1 && c.WebhooksFailed == 2 && c.WebhooksPending == 0
	})
}

func TestWebhookGivesUp(t *testing.T) {
	k := newSink(t, -1)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret, WebhookRetryBase: time.Millisecond, WebhookMaxAttempts: 3})
	if _, err := e.charge(t, "don_1", "pm_card_visa", "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event to be given up", func() bool {
		c := e.s.Ledger().Counts
		return c.WebhooksDropped == 1 && c.WebhooksPending == 0
	})
	if c := e.s.Ledger().Counts; c.WebhooksFailed != 3 || c.WebhooksDelivered != 0 {
		t.Errorf("counts %+v", c)
	}
}

func TestWebhookDuplicatesAndShuffle(t *testing.T) {
	k := newSink(t, 0)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret, WebhookDuplicateRate: 1, WebhookShuffle: true, Seed: 42})
	const n = 20
	for i := range n {
		if _, err := e.charge(t, "don", "pm_card_visa", string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	evs := k.events(t, 2*n)
	count := map[string]int{}
	for _, ev := range evs {
		count[ev.ID]++
	}
	if len(count) != n {
		t.Errorf("%d distinct events, want %d", len(count), n)
	}
	for id, c := range count {
		if c != 2 {
			t.Errorf("event %s delivered %d times", id, c)
		}
	}
}

func TestWebhookSignatures(t *testing.T) {
	// The sandbox's clock signs: a clock behind the wall clock makes
	// deliveries stale, as a replayed delivery would be.
	k := newSink(t, 0)
	clock := newTestClock()
	clock.Advance(-10 * time.Minute)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret, Clock: clock, WebhookAPIVersion: "2025-03-31.basil"})
	if _, err := e.charge(t, "don_1", "pm_card_visa", "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a delivery", func() bool { return len(k.deliveries()) == 1 })
	d := k.deliveries()[0]
	if _, err := fgstripe.ParseWebhook(d.payload, d.signature, []string{testSecret}, 0); err == nil {
		t.Fatal("a stale signature verified")
	}
	// With the age ignored, the signature itself is Stripe's v1 HMAC
	// and the version mismatch is reported as such.
	_, err := fgstripe.ParseWebhook(d.payload, d.signature, []string{testSecret}, time.Hour)
	if err == nil || !errors.Is(err, fgstripe.ErrWebhookAPIVersion) {
		t.Errorf("version mismatch: %v", err)
	}
	at := time.Unix(1_700_000_000, 0)
	want := "t=1700000000,v1=" + hex.EncodeToString(webhook.ComputeSignature(at, []byte(`{"a":1}`), "whsec_x"))
	if got := signature(at, []byte(`{"a":1}`), "whsec_x"); got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tt := range []struct {
		base time.Duration
		n    int
		want time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 5, 16 * time.Second},
		{time.Second, 40, time.Hour},
		{time.Minute, 100, time.Hour},
		{2 * time.Hour, 1, time.Hour},
	} {
		if got := retryDelay(tt.base, tt.n); got != tt.want {
			t.Errorf("retryDelay(%v, %d) = %v, want %v", tt.base, tt.n, got, tt.want)
		}
	}
}

// TestWebhooksWaitForStart: the sandbox answers requests from New on, but
// sends webhooks only between Start and Stop; events raised meanwhile are
// kept and sent once it starts again.
func TestWebhooksWaitForStart(t *testing.T) {
	k := newSink(t, 0)
	e := newEnv(t, Options{WebhookURL: k.url, WebhookSecret: testSecret})
	e.s.Stop()
	e.s.Stop()
	if _, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1"); err != nil {
		t.Fatal(err)
	}
	if n := e.s.hooks.pending.Load(); n != 1 {
		t.Fatalf("%d events pending while stopped, want 1", n)
	}
	if got := k.deliveries(); len(got) != 0 {
		t.Fatalf("%d delivered while stopped", len(got))
	}
	if err := e.s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if evs := k.events(t, 1); evs[0].Type != "payment_intent.succeeded" {
		t.Fatalf("delivered %s", evs[0].Type)
	}
}
