package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// tokenize makes a fresh payment method for a test card token at the
// sandbox, as Stripe.js does in a browser: a new id each time, the card's
// fingerprint the same.
func tokenize(t *testing.T, m *Main, token string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", m.SandboxURL+"/v1/payment_methods",
		strings.NewReader(url.Values{"type": {"card"}, "card[token]": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer sk_test_floodgate_sandbox")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pm struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&pm); err != nil || !strings.HasPrefix(pm.ID, "pm_") {
		t.Fatalf("tokenize %s: %d %v %q", token, resp.StatusCode, err, pm.ID)
	}
	return pm.ID
}

// TestCardTestingAttack runs the scripted attack: many small attempts
// from one address, then one card (a fresh payment method each time, the
// same fingerprint) across many emails and addresses. The first is refused
// with 429 before anything is queued; the second reaches the provider only
// until the card's declines arm the check, then never again. A normal
// donor from another address is not touched.
func TestCardTestingAttack(t *testing.T) {
	m := startMain(t, func(c *config.Config) {
		c.TrustedProxies = "127.0.0.1/32" // the test is the load balancer
		c.AddressLimit, c.EmailLimit, c.CardTestingArm = 10, 3, 2
		c.DispatchWorkers = 1     // one charge at a time: the count below is exact
		c.SandboxRateLimit = 1000 // the attacker tokenises fast
	})
	c := newClient(t, m)
	post := func(from, email, pm string) reply {
		return c.do("POST", "/v1/campaigns/demo/donations",
			fmt.Sprintf(`{"amount": 500, "currency": "eur", "email": %q, "payment_method": %q}`, email, pm),
			"Idempotency-Key", freshKey(), "X-Forwarded-For", from)
	}

	// Many small attempts from one address.
	accepted, limited := 0, 0
	for i := range 40 {
		r := post("198.51.100.66", fmt.Sprintf("t%d@example.org", i), tokenize(t, m, "tok_chargeDeclined"))
		switch r.status {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			if r.json(t)["type"] != "rate_limited" || r.header.Get("Retry-After") == "" {
				t.Fatalf("429 without the contract's shape: %s %v", r.body, r.header)
			}
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	if accepted != 10 || limited != 30 {
		t.Fatalf("from one address: %d accepted, %d limited; want 10 and 30", accepted, limited)
	}

	// One card across many emails, from many addresses.
	var ids []string
	for i := range 15 {
		r := post(fmt.Sprintf("203.0.113.%d", i+1), fmt.Sprintf("card%d@example.org", i), tokenize(t, m, "tok_chargeDeclined"))
		if r.status != http.StatusAccepted {
			t.Fatalf("card attempt %d: %d %s", i, r.status, r.body)
		}
		ids = append(ids, r.json(t)["id"].(string))
	}
	// A normal donor, from another address, with a good card.
	good := post("192.0.2.10", "aoife@example.ie", tokenize(t, m, "tok_visa"))
	if good.status != http.StatusAccepted {
		t.Fatalf("normal donor: %d %s", good.status, good.body)
	}
	goodID := good.json(t)["id"].(string)

	for _, id := range ids {
		v := c.waitStatus(id, "failed", time.Minute)
		if v["failure_code"] != "card_declined" {
			t.Fatalf("attack gift %s: %v", id, v)
		}
	}
	c.waitStatus(goodID, "succeeded", time.Minute)

	// The provider saw the first address's 10 gifts (the check was not yet
	// armed), and of the card's 15 none once the declines armed it.
	sent := map[string]bool{}
	for _, e := range m.Sandbox.Ledger().PaymentIntents {
		sent[e.DonationID] = true
	}
	reached := 0
	for _, id := range ids {
		if sent[id] {
			reached++
		}
	}
	if reached > 2 {
		t.Fatalf("%d of the card's %d attempts reached the provider; the check arms after 2 declines", reached, len(ids))
	}
	if !sent[goodID] {
		t.Fatal("the normal donor's gift never reached the provider")
	}
	metrics := string(c.do("GET", "/metrics", "").body)
	for _, want := range []string{`floodgate_abuse_blocked_total{reason="address"} 30`, `floodgate_abuse_blocked_total{reason="fingerprint"}`} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %s", want)
		}
	}
}

// TestLimitsNeverRefuseAReplay: a donor whose 202 was lost retries with
// the same key as often as it takes; the per-email and per-address limits
// count new attempts and answer a retry with the donation already kept.
// Another body under the key is still 422, and a new key is limited.
func TestLimitsNeverRefuseAReplay(t *testing.T) {
	m := startMain(t, func(c *config.Config) { c.AddressLimit, c.EmailLimit = 3, 2 })
	c := newClient(t, m)
	key, body := freshKey(), gift(1500, "pm_card_visa")
	first := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	id := first.json(t)["id"]
	for i := range 6 {
		r := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
		if r.status != http.StatusAccepted || r.json(t)["id"] != id || r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("retry %d: %d %s", i, r.status, r.body)
		}
	}
	if r := c.do("POST", "/v1/campaigns/demo/donations", gift(1600, "pm_card_visa"), "Idempotency-Key", key); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("other body under the key: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", freshKey()); r.status != http.StatusTooManyRequests {
		t.Fatalf("a new key past the limits: %d %s", r.status, r.body)
	}
}
