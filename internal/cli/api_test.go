package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// TestDonationSucceeds: accepted -> succeeded, and the totals and the SSE
// stream show it.
func TestDonationSucceeds(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	events, stop := c.stream("demo")
	defer stop()
	first := <-events
	if num(first["raised"]) != 0 || num(first["pledged"]) != 0 {
		t.Fatalf("first event = %v, want zero totals", first)
	}

	r := c.do("POST", "/v1/campaigns/demo/donations", gift(2500, "pm_card_visa"), "Idempotency-Key", freshKey())
	if r.status != http.StatusAccepted {
		t.Fatalf("POST: %d %s", r.status, r.body)
	}
	v := r.json(t)
	id := v["id"].(string)
	if v["status"] != "accepted" || v["campaign"] != "demo" || num(v["amount"]) != 2500 || v["currency"] != "eur" ||
		!strings.HasPrefix(id, "don_") || v["donor_token"] == "" || v["created_at"] == "" {
		t.Fatalf("202 body = %s", r.body)
	}
	if loc := r.header.Get("Location"); loc != "/v1/donations/"+id {
		t.Fatalf("Location = %q", loc)
	}

	c.waitStatus(id, "succeeded", 30*time.Second)
	tot := c.totals("demo")
	if num(tot["raised"]) != 2500 || num(tot["donations"]) != 1 || num(tot["pending"]) != 0 || num(tot["pledged"]) != 2500 ||
		tot["currency"] != "eur" || tot["campaign"] != "demo" {
		t.Fatalf("totals = %v", tot)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-events:
			if num(e["raised"]) == 2500 && num(e["donations"]) == 1 {
				return
			}
		case <-deadline:
			t.Fatal("the live stream never showed the gift")
		}
	}
}

// TestDeclineThenAnotherCard: a declined card ends failed with a generic
// code; another card on the same donation then succeeds, with one
// PaymentIntent at the provider.
func TestDeclineThenAnotherCard(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	id, token := c.donate(gift(1500, "pm_card_chargeDeclined"))
	v := c.waitStatus(id, "failed", 30*time.Second)
	if v["failure_code"] != "card_declined" {
		t.Fatalf("failure_code = %v", v["failure_code"])
	}
	if tot := c.totals("demo"); num(tot["pending"]) != 0 || num(tot["pledged"]) != 0 {
		t.Fatalf("a failed gift counts: %v", tot)
	}

	// Only the donor may bring another card.
	if r := c.do("POST", "/v1/donations/"+id+"/payment_method", `{"payment_method": "pm_card_visa"}`); r.status != http.StatusUnauthorized {
		t.Fatalf("without token: %d", r.status)
	}
	r := c.do("POST", "/v1/donations/"+id+"/payment_method", `{"payment_method": "pm_card_visa"}`, "Authorization", "Bearer "+token)
	if r.status != http.StatusAccepted {
		t.Fatalf("new payment method: %d %s", r.status, r.body)
	}
	c.waitStatus(id, "succeeded", 30*time.Second)
	if tot := c.totals("demo"); num(tot["raised"]) != 1500 {
		t.Fatalf("totals = %v", tot)
	}
	l := m.Sandbox.Ledger()
	if pis := l.ByDonation[id]; len(pis) != 1 {
		t.Fatalf("PaymentIntents for the donation = %v, want one (confirmed again)", pis)
	}
	// Failed now succeeded: another card is refused.
	if r := c.do("POST", "/v1/donations/"+id+"/payment_method", `{"payment_method": "pm_card_visa"}`, "Authorization", "Bearer "+token); r.status != http.StatusConflict {
		t.Fatalf("new card after success: %d %s", r.status, r.body)
	}
}

// TestThreeDSecureViewsAndTimeout: requires_action shows the donor what
// the browser needs, shows the public neither that nor personal data, and
// a gift left alone is canceled after the action timeout.
func TestThreeDSecureViewsAndTimeout(t *testing.T) {
	// A long action timeout that the node's clock jumps past once the
	// views are read: a short one would race them on a slow machine.
	clock := &clocktest.Shifted{}
	m := startMainAt(t, clock, func(c *config.Config) { c.ActionTimeout = time.Hour })
	c := newClient(t, m)
	id, token := c.donate(gift(5000, "pm_card_authenticationRequired"))
	pub := c.waitStatus(id, "requires_action", 30*time.Second)
	want := map[string]bool{"id": true, "status": true, "amount": true, "currency": true, "failure_code": true}
	if got := keys(pub); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("public view keys = %v, want exactly %v", got, want)
	}
	for _, secret := range []string{"aoife", "Aoife", "secret", "next_action", "Go on"} {
		r := c.do("GET", "/v1/donations/"+id, "")
		if strings.Contains(string(r.body), secret) {
			t.Fatalf("public view leaks %q: %s", secret, r.body)
		}
	}
	full := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+token).json(t)
	if full["status"] != "requires_action" {
		t.Fatalf("full view = %v, want requires_action", full)
	}
	cs, _ := full["client_secret"].(string)
	na, _ := full["next_action"].(map[string]any)
	if !strings.Contains(cs, "_secret_") || na == nil || na["type"] != "use_stripe_sdk" || full["email"] != "aoife@example.ie" {
		t.Fatalf("full view = %v", full)
	}
	sdk, _ := na["use_stripe_sdk"].(map[string]any)
	page, _ := sdk["stripe_js"].(string)
	if u, err := url.Parse(page); err != nil || !strings.Contains(u.Path, "/_sandbox/3ds/") {
		t.Fatalf("challenge page URL = %q", page)
	}
	if r := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer dt_wrong"); r.status != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", r.status)
	}
	if tot := c.totals("demo"); num(tot["pending"]) != 5000 {
		t.Fatalf("a gift awaiting the donor is pending: %v", tot)
	}

	clock.Jump(2 * time.Hour)
	c.waitStatus(id, "canceled", 60*time.Second)
	if tot := c.totals("demo"); num(tot["pending"]) != 0 || num(tot["pledged"]) != 0 {
		t.Fatalf("canceled gift still counts: %v", tot)
	}
	pis := m.Sandbox.Ledger().ByDonation[id]
	if len(pis) != 1 {
		t.Fatalf("ledger for %s = %v", id, pis)
	}
	for _, e := range m.Sandbox.Ledger().PaymentIntents {
		if e.ID == pis[0] && e.Status != "canceled" {
			t.Fatalf("PaymentIntent %s is %s at the provider, want canceled", e.ID, e.Status)
		}
	}
}

// TestIdempotency: same key and body -> same id, across a restart; same
// key, other body -> 422; the same key many times at once -> one donation.
func TestIdempotency(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	key := freshKey()
	body := gift(2000, "pm_card_visa")
	first := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	id := first.json(t)["id"].(string)
	// The same request respelled is the same request.
	again := c.do("POST", "/v1/campaigns/demo/donations", strings.ReplaceAll(body, `"eur"`, `"EUR"`), "Idempotency-Key", key)
	if again.status != http.StatusAccepted || again.json(t)["id"] != id || again.header.Get("Idempotent-Replayed") != "true" ||
		again.json(t)["donor_token"] != first.json(t)["donor_token"] {
		t.Fatalf("replay: %d %s", again.status, again.body)
	}
	other := c.do("POST", "/v1/campaigns/demo/donations", gift(2100, "pm_card_visa"), "Idempotency-Key", key)
	if other.status != http.StatusUnprocessableEntity || other.json(t)["type"] != "idempotency_mismatch" {
		t.Fatalf("other body: %d %s", other.status, other.body)
	}

	// Many at once with one key: one donation; each answer is it, or 409.
	key2 := freshKey()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := map[string]int{}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := c.do("POST", "/v1/campaigns/demo/donations", gift(3000, "pm_card_visa"), "Idempotency-Key", key2)
			mu.Lock()
			defer mu.Unlock()
			switch r.status {
			case http.StatusAccepted:
				ids[r.json(t)["id"].(string)]++
			case http.StatusConflict:
				ids["409"]++
			default:
				ids[fmt.Sprint(r.status)]++
			}
		}()
	}
	wg.Wait()
	delete(ids, "409")
	if len(ids) != 1 {
		t.Fatalf("concurrent same key: %v, want one id", ids)
	}
	c.waitStatus(id, "succeeded", 30*time.Second)

	// After a restart, the key still answers the same id, and nothing is
	// charged again.
	cfg := m.Config
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.MetricsAddr = "127.0.0.1:0"
	m2 := openMain(t, cfg)
	c2 := newClient(t, m2)
	after := c2.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if after.status != http.StatusAccepted || after.json(t)["id"] != id || after.json(t)["status"] != "succeeded" {
		t.Fatalf("replay after restart: %d %s", after.status, after.body)
	}
	time.Sleep(500 * time.Millisecond)
	if l := m2.Sandbox.Ledger(); len(l.ByDonation[id]) != 1 || len(l.ChargedTwice) != 0 {
		t.Fatalf("ledger after restart: %v charged twice %v", l.ByDonation[id], l.ChargedTwice)
	}
}

// TestFailedCommitNever202: when the disk is full the commit fails and
// every request of the batch is answered 503, never 202, and nothing is
// kept; once space returns, donations are accepted again.
func TestFailedCommitNever202(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	db := m.Store.(*sqlite.Store).Writer()
	count := func() int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM donations").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	var pages int
	if err := db.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	// SQLite's own limit on the file's size, on the writer connection: the
	// engine answers "database or disk is full" for real once the pages
	// the file has are used up.
	if _, err := db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	big := fmt.Sprintf(`{"amount": 2500, "currency": "eur", "email": "aoife@example.ie", "name": %q,
		"payment_method": "pm_card_visa", "message": %q}`, strings.Repeat("n", 200), strings.Repeat("m", 500))
	full := false
	for i := 0; i < 500 && !full; i++ {
		r := c.do("POST", "/v1/campaigns/demo/donations", big, "Idempotency-Key", freshKey())
		switch r.status {
		case http.StatusAccepted:
		case http.StatusServiceUnavailable:
			full = true
		default:
			t.Fatalf("filling: %d %s", r.status, r.body)
		}
	}
	if !full {
		t.Fatal("the file never filled up")
	}
	before := count()
	var wg sync.WaitGroup
	replies := make(chan reply, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies <- c.do("POST", "/v1/campaigns/demo/donations", big, "Idempotency-Key", freshKey())
		}()
	}
	wg.Wait()
	close(replies)
	for r := range replies {
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("with the disk full: %d %s, want 503", r.status, r.body)
		}
		if p := r.json(t); p["type"] != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Fatalf("503 body %s, Retry-After %q", r.body, r.header.Get("Retry-After"))
		}
	}
	if got := count(); got != before {
		t.Fatalf("%d donations kept after failed commits", got-before)
	}
	if _, err := db.Exec("PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	c.donate(big)
}

// TestCampaignAdmin: the admin token guards creation and changes; a closed
// campaign refuses donations with 409.
func TestCampaignAdmin(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	body := `{"id": "spring", "name": "Spring appeal", "currency": "gbp", "goal": 500000, "suggested_amounts": [500, 1000],
		"tax_schemes": ["uk_gift_aid"]}`
	if r := c.do("POST", "/v1/campaigns", body); r.status != http.StatusUnauthorized || r.json(t)["type"] != "unauthorized" {
		t.Fatalf("no token: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/v1/campaigns", body, "Authorization", "Bearer nope"); r.status != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", r.status)
	}
	admin := []string{"Authorization", "Bearer " + testAdminToken}
	r := c.do("POST", "/v1/campaigns", body, admin...)
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	v := r.json(t)
	if v["id"] != "spring" || num(v["min_amount"]) != 30 || v["state"] != "open" || v["totals"] == nil {
		t.Fatalf("created = %s", r.body)
	}
	if r := c.do("POST", "/v1/campaigns", body, admin...); r.status != http.StatusConflict {
		t.Fatalf("duplicate: %d", r.status)
	}
	for _, bad := range []struct{ body, field string }{
		{`{"id": "Bad Id", "name": "x", "currency": "eur"}`, "id"},
		{`{"id": "x", "name": "x", "currency": "eur", "min_amount": 10}`, "min_amount"},
		{`{"id": "x", "name": "x", "currency": "xyz"}`, "currency"},
		{`{"id": "x", "name": "x", "currency": "eur", "tax_schemes": ["us"]}`, "tax_schemes"},
	} {
		r := c.do("POST", "/v1/campaigns", bad.body, admin...)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), `"field":"`+bad.field+`"`) {
			t.Fatalf("create %s: %d %s", bad.body, r.status, r.body)
		}
	}
	list := c.do("GET", "/v1/campaigns", "").json(t)
	if data, _ := list["data"].([]any); len(data) != 2 || list["object"] != "list" || list["has_more"] != false {
		t.Fatalf("list = %v", list)
	}

	p := c.do("PATCH", "/v1/campaigns/spring", `{"name": "Spring appeal 2026", "closes_at": "now"}`, admin...)
	if p.status != http.StatusOK || p.json(t)["state"] != "closed" || p.json(t)["name"] != "Spring appeal 2026" {
		t.Fatalf("patch: %d %s", p.status, p.body)
	}
	d := c.do("POST", "/v1/campaigns/spring/donations", `{"amount": 500, "currency": "gbp", "email": "a@example.org", "payment_method": "pm_card_visa"}`,
		"Idempotency-Key", freshKey())
	if d.status != http.StatusConflict || d.json(t)["type"] != "campaign_closed" {
		t.Fatalf("donation to a closed campaign: %d %s", d.status, d.body)
	}
	if r := c.do("PATCH", "/v1/campaigns/spring", `{"closes_at": "2099-01-01T00:00:00Z"}`, admin...); r.status != http.StatusConflict || r.json(t)["type"] != "invalid_state" {
		t.Fatalf("reopening a closed campaign: %d %s", r.status, r.body)
	}
	if r := c.do("PATCH", "/v1/campaigns/spring", `{"closes_at": "now"}`, admin...); r.status != http.StatusOK || r.json(t)["state"] != "closed" {
		t.Fatalf("closing a closed campaign again: %d %s", r.status, r.body)
	}
	if r := c.do("PATCH", "/v1/campaigns/nope", `{"name": "x"}`, admin...); r.status != http.StatusNotFound {
		t.Fatalf("patch unknown: %d", r.status)
	}
}

// TestCancelWhileWaiting: a donor cancels a gift still in line (the
// provider rate is held very low so that it is still waiting).
func TestCancelWhileWaiting(t *testing.T) {
	m := startMain(t, func(c *config.Config) {
		c.ProviderRate, c.ProviderGlobalRate = 0.2, 0.2
	})
	c := newClient(t, m)
	// The first gift takes the one send the rate allows for a while; the
	// second waits in line.
	c.donate(gift(1000, "pm_card_visa"))
	c.donate(gift(1000, "pm_card_visa"))
	id, token := c.donate(gift(1200, "pm_card_visa"))
	pub := c.do("GET", "/v1/donations/"+id, "")
	v := pub.json(t)
	if v["status"] != "accepted" || v["queue_position"] == nil || v["eta_seconds"] == nil || pub.header.Get("Retry-After") == "" {
		t.Fatalf("waiting view: %s (Retry-After %q)", pub.body, pub.header.Get("Retry-After"))
	}
	if r := c.do("POST", "/v1/donations/"+id+"/cancel", "", "Authorization", "Bearer "+token); r.status != http.StatusOK || r.json(t)["status"] != "canceled" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/v1/donations/"+id+"/cancel", "", "Authorization", "Bearer "+token); r.status != http.StatusConflict {
		t.Fatalf("second cancel: %d %s", r.status, r.body)
	}
	// The first gift may have settled by now: pledged counts both.
	if tot := c.totals("demo"); num(tot["pledged"]) != 2000 {
		t.Fatalf("totals after cancel = %v", tot)
	}
}

// TestThreeDSecureChallenge: the donor approves or fails the sandbox's
// challenge page; the signed webhook moves the donation on.
func TestThreeDSecureChallenge(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	for _, tt := range []struct{ verdict, want, code string }{
		{"complete", "succeeded", ""},
		{"fail", "failed", "authentication_failed"},
	} {
		t.Run(tt.verdict, func(t *testing.T) {
			id, token := c.donate(gift(4000, "pm_card_authenticationRequired"))
			c.waitStatus(id, "requires_action", 30*time.Second)
			full := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+token).json(t)
			page := full["next_action"].(map[string]any)["use_stripe_sdk"].(map[string]any)["stripe_js"].(string)
			u, err := url.Parse(page)
			if err != nil {
				t.Fatal(err)
			}
			// The browser posts the page's form: the challenge page is
			// served on floodgate's own port under /sandbox/.
			form := url.Values{"client_secret": {full["client_secret"].(string)}}
			resp, err := http.PostForm(m.URL()+u.Path+"/"+tt.verdict, form)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode >= 400 {
				t.Fatalf("challenge %s: %d", tt.verdict, resp.StatusCode)
			}
			v := c.waitStatus(id, tt.want, 30*time.Second)
			if tt.code != "" && v["failure_code"] != tt.code {
				t.Fatalf("failure_code = %v, want %s", v["failure_code"], tt.code)
			}
		})
	}
}

// TestGeneratedAdminToken: with no admin token configured, the first start
// prints one, keeps only its hash, and later starts print nothing.
func TestGeneratedAdminToken(t *testing.T) {
	cfg := loopbackDefaults(t)
	var out strings.Builder
	m := &Main{Config: cfg, Stdout: &out}
	if err := m.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	tok := regexp.MustCompile(`fga_[a-z0-9]+`).FindString(out.String())
	if tok == "" {
		t.Fatalf("no token printed: %q", out.String())
	}
	kept, err := os.ReadFile(filepath.Join(cfg.DataDir, adminTokenFile))
	if err != nil || strings.Contains(string(kept), tok) || len(strings.TrimSpace(string(kept))) != 64 {
		t.Fatalf("kept %q (%v): want the hex SHA-256 only", kept, err)
	}
	c := newClient(t, m)
	body := `{"id": "c1", "name": "C1", "currency": "eur"}`
	if r := c.do("POST", "/v1/campaigns", body, "Authorization", "Bearer "+tok); r.status != http.StatusCreated {
		t.Fatalf("printed token refused: %d %s", r.status, r.body)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	m2 := &Main{Config: cfg, Stdout: &out}
	if err := m2.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if out.Len() != 0 {
		t.Fatalf("second start printed %q", out.String())
	}
	c2 := newClient(t, m2)
	if r := c2.do("POST", "/v1/campaigns", `{"id": "c2", "name": "C2", "currency": "eur"}`, "Authorization", "Bearer "+tok); r.status != http.StatusCreated {
		t.Fatalf("token after restart: %d %s", r.status, r.body)
	}
}

// TestLiveStreamHeartbeatAndMetrics: the stream sends a comment heartbeat
// within the configured interval, and /metrics carries the series the
// contract names.
func TestLiveStreamHeartbeatAndMetrics(t *testing.T) {
	m := startMain(t, func(c *config.Config) { c.SSEHeartbeat = 200 * time.Millisecond })
	req, _ := http.NewRequest("GET", m.URL()+"/v1/campaigns/demo/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, h := range [][2]string{{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-store"}, {"X-Accel-Buffering", "no"}} {
		if got := resp.Header.Get(h[0]); got != h[1] {
			t.Fatalf("%s = %q, want %q", h[0], got, h[1])
		}
	}
	buf := make([]byte, 4096)
	var seen strings.Builder
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(seen.String(), ": heartbeat") {
		if time.Now().After(deadline) {
			t.Fatalf("no heartbeat; stream so far: %q", seen.String())
		}
		n, err := resp.Body.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		seen.Write(buf[:n])
	}
	if !strings.Contains(seen.String(), "event: totals\ndata: {") {
		t.Fatalf("no totals event first: %q", seen.String())
	}

	c := newClient(t, m)
	id, _ := c.donate(gift(2500, "pm_card_visa"))
	c.waitStatus(id, "succeeded", 30*time.Second)
	metrics := string(c.do("GET", "/metrics", "").body)
	for _, name := range []string{"floodgate_http_request_duration_seconds_bucket", "floodgate_donations_accepted_total 1",
		`floodgate_donations_settled_total{status="succeeded"} 1`, "floodgate_backlog_waiting", "floodgate_backlog_age_seconds",
		"floodgate_provider_send_rate", "floodgate_provider_rate_limited_total", "floodgate_batch_commit_seconds",
		"process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !strings.Contains(metrics, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// TestReplayAfterClose: a key answered 202 while the campaign was open
// still answers the same donation after it closes; a new key is refused.
func TestReplayAfterClose(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	key, body := freshKey(), gift(2500, "pm_card_visa")
	first := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if first.status != http.StatusAccepted {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if r := c.do("PATCH", "/v1/campaigns/demo", `{"closes_at": "now"}`, "Authorization", "Bearer "+testAdminToken); r.status != http.StatusOK {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	again := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if again.status != http.StatusAccepted || again.json(t)["id"] != first.json(t)["id"] ||
		again.json(t)["donor_token"] != first.json(t)["donor_token"] || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay after close: %d %s", again.status, again.body)
	}
	if r := c.do("POST", "/v1/campaigns/demo/donations", gift(2600, "pm_card_visa"), "Idempotency-Key", key); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other body, after close: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", freshKey()); r.status != http.StatusConflict || r.json(t)["type"] != "campaign_closed" {
		t.Fatalf("new key after close: %d %s", r.status, r.body)
	}
}
