package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/ingest"
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

// sentTo returns the donations among ids that reached the sandbox.
func sentTo(m *Main, ids []string) map[string]bool {
	sent := map[string]bool{}
	for _, e := range m.Sandbox.Ledger().PaymentIntents {
		sent[e.DonationID] = true
	}
	out := map[string]bool{}
	for _, id := range ids {
		if sent[id] {
			out[id] = true
		}
	}
	return out
}

// waitSuspect waits until the node's guard has learned enough declines
// from addr to hold it suspect: a gift's status is visible a moment
// before its outcome is told to the guard.
func waitSuspect(t *testing.T, m *Main, addr string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !m.Guard.Suspect(addr) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never turned suspect", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pause pauses or resumes charging through the admin API.
func (c *client) pause(paused bool) {
	c.tb.Helper()
	r := c.do("POST", "/v1/admin/charging", fmt.Sprintf(`{"paused": %v}`, paused), "Authorization", "Bearer "+testAdminToken)
	if r.status != http.StatusOK {
		c.tb.Fatalf("pause %v: %d %s", paused, r.status, r.body)
	}
}

// blocked is the value of floodgate_abuse_blocked_total{reason}.
func blocked(t *testing.T, c *client, reason string) int {
	t.Helper()
	prefix := `floodgate_abuse_blocked_total{reason="` + reason + `"} `
	for _, line := range strings.Split(string(c.do("GET", "/metrics", "").body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("metric %q", line)
			}
			return n
		}
	}
	return 0
}

// TestCardTestingAttack runs the scripted attack: small attempts from one
// address, then one card (a fresh payment method each time, the same
// fingerprint) across many emails and addresses. Once the address's
// declines make it suspect, its attempts past the allowance are refused
// with 429 before anything is queued, and those it was allowed are
// screened again before charging; the card reaches the provider only until
// its declines arm the check, then never again. A normal donor from
// another address is not touched.
func TestCardTestingAttack(t *testing.T) {
	// The guard's clock stands still: the minute's allowance is exact.
	m := startMainWith(t, func(m *Main) { m.GuardClock = clocktest.New(time.Now()) }, func(c *config.Config) {
		c.TrustedProxies = "127.0.0.1/32" // the test is the load balancer
		c.AddressLimit, c.AddressDeclineLimit, c.EmailLimit, c.CardTestingArm = 10, 3, 3, 2
		c.DispatchWorkers = 1     // one charge at a time: the count below is exact
		c.SandboxRateLimit = 1000 // the attacker tokenises fast
	})
	c := newClient(t, m)
	post := func(from, email, pm string) reply {
		return c.do("POST", "/v1/campaigns/demo/donations",
			fmt.Sprintf(`{"amount": 500, "currency": "eur", "email": %q, "payment_method": %q}`, email, pm),
			"Idempotency-Key", freshKey(), "X-Forwarded-For", from)
	}

	// The first attempts from the address are declined at the bank.
	const attacker = "198.51.100.66"
	for i := range 3 {
		r := post(attacker, fmt.Sprintf("t%d@example.org", i), tokenize(t, m, "tok_chargeDeclined"))
		if r.status != http.StatusAccepted {
			t.Fatalf("attempt %d before any decline: %d %s", i, r.status, r.body)
		}
		c.waitStatus(r.json(t)["id"].(string), "failed", time.Minute)
	}
	waitSuspect(t, m, attacker)

	// Many small attempts from the suspect address, held in line until
	// they have all been answered.
	c.pause(true)
	var allowed []string
	limited := 0
	for i := range 40 {
		r := post(attacker, fmt.Sprintf("t%d@example.org", i+3), tokenize(t, m, "tok_chargeDeclined"))
		switch r.status {
		case http.StatusAccepted:
			allowed = append(allowed, r.json(t)["id"].(string))
		case http.StatusTooManyRequests:
			limited++
			if r.json(t)["type"] != "rate_limited" || r.header.Get("Retry-After") == "" {
				t.Fatalf("429 without the contract's shape: %s %v", r.body, r.header)
			}
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	if len(allowed) != 10 || limited != 30 {
		t.Fatalf("from the suspect address: %d accepted, %d limited; want 10 and 30", len(allowed), limited)
	}
	c.pause(false)
	// Those it was allowed took the minute's allowance: none is charged.
	for _, id := range allowed {
		if v := c.waitStatus(id, "failed", time.Minute); v["failure_code"] != "processing_error" {
			t.Fatalf("allowed gift from the suspect address: %v", v)
		}
	}
	if sent := sentTo(m, allowed); len(sent) != 0 {
		t.Fatalf("%d of the suspect address's queued gifts reached the provider", len(sent))
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

	// The card's first declines (from the first address) armed the check:
	// of its 15 attempts from other addresses, none reached the provider.
	if sent := sentTo(m, ids); len(sent) > 0 {
		t.Fatalf("%d of the card's %d attempts reached the provider after the check was armed", len(sent), len(ids))
	}
	if len(sentTo(m, []string{goodID})) != 1 {
		t.Fatal("the normal donor's gift never reached the provider")
	}
	if n := blocked(t, c, "address"); n != 40 {
		t.Fatalf(`floodgate_abuse_blocked_total{reason="address"} = %d, want 30 refused and 10 screened`, n)
	}
	if n := blocked(t, c, "fingerprint"); n < len(ids) {
		t.Fatalf(`floodgate_abuse_blocked_total{reason="fingerprint"} = %d, want at least %d`, n, len(ids))
	}
}

// TestLimitsNeverRefuseAReplay: a donor whose 202 was lost retries with
// the same key as often as it takes; the per-email limit and the limit on
// a suspect address count new attempts and answer a retry with the
// donation already kept. Another body under the key is still 422, and a
// new key is limited.
func TestLimitsNeverRefuseAReplay(t *testing.T) {
	for _, limit := range []string{"address", "email"} {
		t.Run(limit, func(t *testing.T) {
			m := startMainWith(t, func(m *Main) { m.GuardClock = clocktest.New(time.Now()) }, func(c *config.Config) {
				if limit == "address" {
					c.AddressLimit = 3
				} else {
					c.EmailLimit = 2
				}
			})
			for range 10 { // this client's address is suspect
				m.Guard.Learn(&floodgate.PaymentOrder{ClientAddr: "127.0.0.1", Status: floodgate.StatusFailed, FailureCode: "card_declined"})
			}
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
				t.Fatalf("a new key past the limit: %d %s", r.status, r.body)
			}
			if n := blocked(t, c, limit); n == 0 {
				t.Fatalf("no refusal counted for the %s limit", limit)
			}
		})
	}
}

// waitAll waits until every donation among ids has status want, reading
// the store (thousands of gifts: polling each over HTTP would be slow).
func waitAll(t *testing.T, m *Main, ids []string, want floodgate.DonationStatus) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for _, id := range ids {
		for {
			d, err := m.Store.Donation(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if d.Status == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("donation %s is %s, want %s", id, d.Status, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestAudienceAndTesterBehindOneAddress, with the card-testing limits at
// their defaults: 2,000 donors behind one address (a venue's Wi-Fi, seen
// through the trusted load balancer) within a minute, each with their own
// email and card, are all accepted and charged. Later, once their
// successes have left the ten-minute window, a card tester on that same
// address queues card after card (new email each time). Its declines make
// the address suspect; of the gifts it queued, those past the minute's
// allowance fail without reaching the provider, and its next attempt is
// refused with 429.
func TestAudienceAndTesterBehindOneAddress(t *testing.T) {
	guardClock := clocktest.New(time.Now())
	m := startMainWith(t, func(m *Main) { m.GuardClock = guardClock }, func(c *config.Config) {
		defaults := config.Defaults()
		c.AddressLimit, c.AddressDeclineLimit, c.EmailLimit = defaults.AddressLimit, defaults.AddressDeclineLimit, defaults.EmailLimit
		c.TrustedProxies = "127.0.0.1/32" // the test is the load balancer
		// Pacing only, not limits: charge the audience in seconds.
		c.ProviderRate, c.ProviderGlobalRate, c.SandboxRateLimit = 1000, 1000, 1000
	})
	if m.Config.AddressLimit != 20 || m.Config.AddressDeclineLimit != 10 || m.Config.EmailLimit != 10 {
		t.Fatalf("the defaults moved: %d attempts a minute, %d declines, %d per email; this test counts with 20, 10, 10",
			m.Config.AddressLimit, m.Config.AddressDeclineLimit, m.Config.EmailLimit)
	}
	c := newClient(t, m)
	const venue = "198.51.100.20"
	post := func(email, pm string) reply {
		return c.do("POST", "/v1/campaigns/demo/donations",
			fmt.Sprintf(`{"amount": 1000, "currency": "eur", "email": %q, "payment_method": %q}`, email, pm),
			"Idempotency-Key", freshKey(), "X-Forwarded-For", venue)
	}

	// The audience: 2,000 donors, 16 at a time, within one minute of the
	// guard's clock (which stands still). Their gifts are charged once all
	// are in, so that accepting them does not share the machine with it.
	c.pause(true)
	cards := []string{"pm_card_visa", "pm_card_visa_debit", "pm_card_mastercard", "pm_card_amex"}
	audience := make([]string, 2000)
	refused := make(chan string, len(audience))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := range next {
				r := post(fmt.Sprintf("donor%d@example.org", i), cards[i%len(cards)])
				var v map[string]any
				if r.status != http.StatusAccepted || json.Unmarshal(r.body, &v) != nil {
					refused <- fmt.Sprintf("donor %d: %d %s", i, r.status, r.body)
					continue
				}
				audience[i], _ = v["id"].(string)
			}
		})
	}
	for i := range audience {
		next <- i
	}
	close(next)
	wg.Wait()
	close(refused)
	for e := range refused {
		t.Fatalf("the audience behind one address was refused: %s", e)
	}
	c.pause(false)
	waitAll(t, m, audience, floodgate.StatusSucceeded)
	if m.Guard.Suspect(venue) {
		t.Fatal("2,000 successes made the venue suspect")
	}

	// Later that night: the audience's successes have left the window. A
	// tester queues gifts before any is charged.
	guardClock.Advance(21 * time.Minute)
	c.pause(true)
	declining := []string{"pm_card_chargeDeclinedIncorrectCvc", "pm_card_chargeDeclinedExpiredCard"}
	tester := make([]string, 200)
	for i := range tester {
		r := post(fmt.Sprintf("tester%d@example.org", i), declining[i%2])
		if r.status != http.StatusAccepted {
			t.Fatalf("tester attempt %d before any decline: %d %s", i, r.status, r.body)
		}
		tester[i] = r.json(t)["id"].(string)
	}
	c.pause(false)
	waitAll(t, m, tester, floodgate.StatusFailed)
	sent := sentTo(m, tester)
	// Ten declines make the address suspect and the minute's allowance
	// lets twenty more through. Gifts already in the workers' hands when
	// the tenth decline was learned passed the screen before it (about one
	// a worker, a few more if a webhook settled a decline a moment before
	// the dispatcher did): far fewer than the 200 queued.
	if len(sent) < 30 || len(sent) > 100 {
		t.Fatalf("%d of the tester's %d queued gifts reached the provider, want 30 (10 declines, 20 allowed) plus at most the gifts in the workers' hands", len(sent), len(tester))
	}
	screened := 0
	for i, id := range tester {
		d, err := m.Store.Donation(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case sent[id] && !ingest.CardDecline(d.FailureCode):
			t.Fatalf("tester gift %d reached the provider and failed with %s", i, d.FailureCode)
		case !sent[id] && d.FailureCode != "processing_error":
			t.Fatalf("tester gift %d never reached the provider but failed with %s", i, d.FailureCode)
		case !sent[id]:
			screened++
		}
	}
	t.Logf("of the tester's %d queued gifts, %d reached the provider, %d were failed unsent", len(tester), len(sent), screened)
	if n := blocked(t, c, "address"); n != screened {
		t.Fatalf(`floodgate_abuse_blocked_total{reason="address"} = %d, want the %d screened`, n, screened)
	}
	// The allowance is spent: the tester's next attempt is refused.
	r := post("tester-next@example.org", declining[0])
	if r.status != http.StatusTooManyRequests || r.json(t)["type"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("the suspect address's next attempt: %d %v %s", r.status, r.header, r.body)
	}
}

// TestNewCardIsLimited: a new card for a declined gift passes the same
// limits as a new gift, counted against the gift's email, and is refused
// exactly like a new gift: 429 rate_limited with Retry-After, the gift
// left as it was.
func TestNewCardIsLimited(t *testing.T) {
	m := startMainWith(t, func(m *Main) { m.GuardClock = clocktest.New(time.Now()) }, func(c *config.Config) { c.EmailLimit = 3 })
	c := newClient(t, m)
	id, token := c.donate(gift(1500, "pm_card_chargeDeclinedIncorrectCvc"))
	c.waitStatus(id, "failed", time.Minute)
	for i := range 2 { // the gift was the first attempt of three
		r := c.do("POST", "/v1/donations/"+id+"/payment_method", `{"payment_method": "pm_card_chargeDeclinedIncorrectCvc"}`,
			"Authorization", "Bearer "+token)
		if r.status != http.StatusAccepted {
			t.Fatalf("new card %d: %d %s", i, r.status, r.body)
		}
		c.waitStatus(id, "failed", time.Minute)
	}
	r := c.do("POST", "/v1/donations/"+id+"/payment_method", `{"payment_method": "pm_card_visa"}`, "Authorization", "Bearer "+token)
	if r.status != http.StatusTooManyRequests || r.json(t)["type"] != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("a fourth attempt for the email: %d %v %s", r.status, r.header, r.body)
	}
	full := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+token).json(t)
	if full["status"] != "failed" || full["payment_method"] != "pm_card_chargeDeclinedIncorrectCvc" {
		t.Fatalf("the refused card changed the gift: %v", full)
	}
	if n := blocked(t, c, "email"); n != 1 {
		t.Fatalf(`floodgate_abuse_blocked_total{reason="email"} = %d, want 1`, n)
	}
}
