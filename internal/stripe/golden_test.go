package stripe_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldenOrder is a donation's payment order as the dispatcher sends it at
// key generation 3.
func goldenOrder(format floodgate.RequestFormat) *floodgate.PaymentOrder {
	at := time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)
	return &floodgate.PaymentOrder{ID: "po_06h3qvnv8szd676n3876zkpak67jyer5ar4g", Seq: 41, Kind: floodgate.KindDonation,
		PaysFor: "don_06h3qvnv8f03ff9ezyachsv37dp6cxrzs570", CampaignID: "spring-appeal", Amount: 2500, Currency: "eur",
		PaymentMethod: "pm_card_visa", ClientAddr: "192.0.2.1", Status: floodgate.StatusProcessing, Attempt: 3,
		KeySince: &at, Format: format, ClaimedBy: "d1", Token: 7, CreatedAt: at, UpdatedAt: at}
}

// TestCreateBodyGolden pins, byte for byte, the form-encoded body of the
// PaymentIntent create request a donation's order sends, in each request
// format, and its idempotency key. Stripe compares a request retried
// under a key with the first one and answers idempotency_error to any
// difference: a key generation begun by one release and retried by the
// next must send the very same bytes. A change here (a new parameter, a
// stripe-go upgrade that encodes differently) breaks every key in flight
// at an upgrade; it belongs to a new RequestFormat, never to an old one.
func TestCreateBodyGolden(t *testing.T) {
	var (
		mu     sync.Mutex
		body   []byte
		header http.Header
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		body, header = b, r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id": "pi_golden", "object": "payment_intent", "status": "succeeded", "amount": 2500, "currency": "eur", "created": 1796500800}`)
	}))
	defer srv.Close()
	c := client(t, srv.URL, key)
	for _, tt := range []struct {
		format floodgate.RequestFormat
		file   string
		key    string
	}{
		{floodgate.FormatDonation, "create-donation-format0.golden", "floodgate-don_06h3qvnv8f03ff9ezyachsv37dp6cxrzs570-3"},
		{floodgate.FormatOrder, "create-donation-format1.golden", "floodgate-po_06h3qvnv8szd676n3876zkpak67jyer5ar4g-3"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			p, err := c.Charge(context.Background(), goldenOrder(tt.format).ChargeRequest())
			if err != nil || p.ID != "pi_golden" {
				t.Fatalf("Charge = %+v, %v", p, err)
			}
			mu.Lock()
			got, h := body, header
			mu.Unlock()
			if k := h.Get("Idempotency-Key"); k != tt.key {
				t.Errorf("Idempotency-Key = %q, want %q", k, tt.key)
			}
			path := filepath.Join("testdata", tt.file)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/stripe -run CreateBodyGolden -update writes it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the create body of format %d changed: a key in flight would be refused.\n--- got:\n%s\n--- want:\n%s", tt.format, got, want)
			}
		})
	}
}
