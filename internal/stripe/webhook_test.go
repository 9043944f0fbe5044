package stripe_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"

	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sandbox"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

const secret = "whsec_current"

// received is one delivery as the endpoint got it.
type received struct {
	payload []byte
	header  string
}

// endpoint receives the sandbox's webhooks.
func endpoint(tb testing.TB) (string, func() []received) {
	tb.Helper()
	var mu sync.Mutex
	var got []received
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{b, r.Header.Get("Stripe-Signature")})
		mu.Unlock()
	}))
	tb.Cleanup(ts.Close)
	return ts.URL, func() []received {
		mu.Lock()
		defer mu.Unlock()
		return append([]received(nil), got...)
	}
}

// delivered charges once through a sandbox configured by opts and returns
// the first delivery.
func delivered(tb testing.TB, opts sandbox.Options) received {
	tb.Helper()
	url, got := endpoint(tb)
	opts.WebhookURL = url
	if opts.WebhookSecret == "" {
		opts.WebhookSecret = secret
	}
	_, c, _, _ := start(tb, opts)
	if _, err := c.Charge(context.Background(), gift("don_1", "pm_card_visa", "k")); err != nil {
		tb.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(got()) == 0 {
		if time.Now().After(deadline) {
			tb.Fatal("no webhook delivered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return got()[0]
}

func TestParseWebhook(t *testing.T) {
	fresh := delivered(t, sandbox.Options{})
	stale := func() received {
		c := clocktest.New(time.Now().Add(-10 * time.Minute))
		return delivered(t, sandbox.Options{Clock: c})
	}()
	otherVersion := delivered(t, sandbox.Options{WebhookAPIVersion: "2025-09-30.clover"})
	sameTrain := delivered(t, sandbox.Options{WebhookAPIVersion: "2026-06-24.dahlia"})

	tests := []struct {
		name      string
		d         received
		header    string // replaces the delivery's header when set
		secrets   []string
		tolerance time.Duration
		want      error
	}{
		{"good secret", fresh, "", []string{secret}, 0, nil},
		{"rotated: new secret second", fresh, "", []string{"whsec_old", secret}, 0, nil},
		{"empty secrets skipped", fresh, "", []string{"", secret}, 0, nil},
		{"bad secret", fresh, "", []string{"whsec_wrong"}, 0, fgstripe.ErrWebhookSignature},
		{"no secret", fresh, "", nil, 0, fgstripe.ErrWebhookSignature},
		{"no header", fresh, "-", []string{secret}, 0, fgstripe.ErrWebhookSignature},
		{"malformed header", fresh, "t=1,v1", []string{secret}, 0, fgstripe.ErrWebhookSignature},
		{"stale", stale, "", []string{secret}, 0, fgstripe.ErrWebhookTimestamp},
		{"stale within a wider tolerance", stale, "", []string{secret}, time.Hour, nil},
		{"version mismatch", otherVersion, "", []string{secret}, 0, fgstripe.ErrWebhookAPIVersion},
		{"same release train", sameTrain, "", []string{secret}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.d.header
			switch tt.header {
			case "":
			case "-":
				header = ""
			default:
				header = tt.header
			}
			ev, err := fgstripe.ParseWebhook(tt.d.payload, header, tt.secrets, tt.tolerance)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && (ev.Type != "payment_intent.succeeded" || ev.Data == nil) {
				t.Errorf("event %+v", ev)
			}
		})
	}
	// A payload changed after signing fails, whatever the secret.
	tampered := append([]byte(nil), fresh.payload...)
	tampered[len(tampered)-2] = ' '
	if _, err := fgstripe.ParseWebhook(tampered, fresh.header, []string{secret}, 0); !errors.Is(err, fgstripe.ErrWebhookSignature) {
		t.Errorf("tampered: %v", err)
	}
	// stripe-go's own parser agrees with the sandbox's signature.
	if _, err := webhook.ConstructEvent(fresh.payload, fresh.header, secret); err != nil {
		t.Errorf("stripe-go ConstructEvent: %v", err)
	}
}

func TestDecodeEvent(t *testing.T) {
	url, got := endpoint(t)
	s, c, _, _ := start(t, sandbox.Options{WebhookURL: url, WebhookSecret: secret})
	ctx := context.Background()
	p, err := c.Charge(ctx, gift("don_1", "pm_card_createDispute", "k"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(got()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries", len(got()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	byType := map[string]*fgstripe.Event{}
	for _, d := range got() {
		ev, err := fgstripe.ParseWebhook(d.payload, d.header, []string{secret}, 0)
		if err != nil {
			t.Fatal(err)
		}
		e, err := fgstripe.DecodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		byType[e.Type] = e
	}
	ok := byType["payment_intent.succeeded"]
	if ok == nil || ok.Payment == nil || ok.Payment.ID != p.ID || ok.Payment.Status != floodgate.PaymentSucceeded || ok.Metadata[floodgate.MetaDonation] != "don_1" || ok.Created.IsZero() {
		t.Errorf("succeeded: %+v", ok)
	}
	dispute := byType["charge.dispute.created"]
	if dispute == nil || dispute.PaymentIntentID != p.ID || dispute.Amount != 2500 || dispute.Currency != "eur" {
		t.Errorf("dispute: %+v", dispute)
	}
	// An event floodgate does not act on decodes to its envelope.
	other, err := fgstripe.DecodeEvent(stripe.Event{ID: "evt_1", Type: "customer.created", Data: &stripe.EventData{Raw: json.RawMessage(`{"id":"cus_1"}`)}})
	if err != nil || other.PaymentIntentID != "" || other.Payment != nil {
		t.Errorf("other event: %+v, %v", other, err)
	}
	if s.Ledger().Counts.WebhooksDelivered < 2 {
		t.Error("ledger does not count the deliveries")
	}
}

// TestCheckSignatureHeader: a header is refused before any payload is
// read when it could verify none: missing, not Stripe's key=value form,
// without a timestamp or a 64-hex-digit v1 signature, or signed outside
// the tolerance of now in either direction. Headers as Stripe writes
// them pass, also while a secret is rolled (two v1) and with the
// test-mode v0 beside v1.
func TestCheckSignatureHeader(t *testing.T) {
	now := time.Unix(1_780_000_000, 0)
	sig := strings.Repeat("0123456789abcdef", 4)
	ts := func(d time.Duration) string { return fmt.Sprint(now.Add(d).Unix()) }
	tests := []struct {
		name      string
		header    string
		tolerance time.Duration
		want      error
	}{
		{"as Stripe writes it", "t=" + ts(0) + ",v1=" + sig, 0, nil},
		{"two v1 while a secret is rolled", "t=" + ts(0) + ",v1=" + sig + ",v1=" + strings.ToUpper(sig), 0, nil},
		{"v0 beside v1", "t=" + ts(0) + ",v1=" + sig + ",v0=" + sig, 0, nil},
		{"v1 first", "v1=" + sig + ",t=" + ts(0), 0, nil},
		{"an invalid v1 beside a valid one", "t=" + ts(0) + ",v1=zz,v1=" + sig, 0, nil},
		{"299 seconds old", "t=" + ts(-299*time.Second) + ",v1=" + sig, 0, nil},
		{"300 seconds old", "t=" + ts(-300*time.Second) + ",v1=" + sig, 0, nil},
		{"300 seconds ahead", "t=" + ts(300*time.Second) + ",v1=" + sig, 0, nil},
		{"an hour old within a wider tolerance", "t=" + ts(-time.Hour) + ",v1=" + sig, 2 * time.Hour, nil},
		{"the last t counts", "t=1,t=" + ts(0) + ",v1=" + sig, 0, nil},

		{"missing", "", 0, fgstripe.ErrWebhookSignature},
		{"garbage", "hello", 0, fgstripe.ErrWebhookSignature},
		{"another scheme", "sha256=" + sig, 0, fgstripe.ErrWebhookSignature},
		{"no timestamp", "v1=" + sig, 0, fgstripe.ErrWebhookSignature},
		{"timestamp not a number", "t=now,v1=" + sig, 0, fgstripe.ErrWebhookSignature},
		{"no v1", "t=" + ts(0), 0, fgstripe.ErrWebhookSignature},
		{"v0 only", "t=" + ts(0) + ",v0=" + sig, 0, fgstripe.ErrWebhookSignature},
		{"empty v1", "t=" + ts(0) + ",v1=", 0, fgstripe.ErrWebhookSignature},
		{"v1 too short", "t=" + ts(0) + ",v1=" + sig[:62], 0, fgstripe.ErrWebhookSignature},
		{"v1 too long", "t=" + ts(0) + ",v1=" + sig + "00", 0, fgstripe.ErrWebhookSignature},
		{"v1 not hex", "t=" + ts(0) + ",v1=" + strings.Repeat("zz", 32), 0, fgstripe.ErrWebhookSignature},
		{"a trailing comma", "t=" + ts(0) + ",v1=" + sig + ",", 0, fgstripe.ErrWebhookSignature},
		{"spaces", "t=" + ts(0) + ", v1=" + sig, 0, fgstripe.ErrWebhookSignature},
		{"301 seconds old", "t=" + ts(-301*time.Second) + ",v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"301 seconds ahead", "t=" + ts(301*time.Second) + ",v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"a day old", "t=" + ts(-24*time.Hour) + ",v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"the epoch", "t=0,v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"the largest timestamp", "t=9223372036854775807,v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"the smallest timestamp", "t=-9223372036854775808,v1=" + sig, 0, fgstripe.ErrWebhookTimestamp},
		{"beyond int64", "t=99999999999999999999,v1=" + sig, 0, fgstripe.ErrWebhookSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fgstripe.CheckSignatureHeader(tt.header, tt.tolerance, now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckSignatureHeader(%q) = %v, want %v", tt.header, err, tt.want)
			}
		})
	}
}

// TestCheckHeaderPassesRealDeliveries: the header of a delivery the
// sandbox signs exactly as Stripe does passes the check, and one signed
// outside the tolerance fails it as Parse would.
func TestCheckHeaderPassesRealDeliveries(t *testing.T) {
	fresh := delivered(t, sandbox.Options{})
	w := fgstripe.Webhooks{Secrets: []string{secret}}
	if err := w.CheckHeader(fresh.header); err != nil {
		t.Fatalf("CheckHeader(%q) = %v", fresh.header, err)
	}
	if _, err := w.Parse(fresh.payload, fresh.header); err != nil {
		t.Fatalf("Parse after CheckHeader: %v", err)
	}
	stale := delivered(t, sandbox.Options{Clock: clocktest.New(time.Now().Add(-10 * time.Minute))})
	if err := w.CheckHeader(stale.header); !errors.Is(err, fgstripe.ErrWebhookTimestamp) {
		t.Fatalf("CheckHeader(stale %q) = %v, want a timestamp error", stale.header, err)
	}
}
