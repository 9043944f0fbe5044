package cli

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/sandbox"
)

// TestPauseAndResume: an operator pauses charging; donations are still
// accepted and told honestly that they wait (no estimate while paused);
// nothing is charged until charging resumes.
func TestPauseAndResume(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	admin := []string{"Authorization", "Bearer " + testAdminToken}
	if r := c.do("POST", "/v1/admin/charging", `{"paused": true}`); r.status != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", r.status)
	}
	r := c.do("POST", "/v1/admin/charging", `{"paused": true}`, admin...)
	if r.status != http.StatusOK || r.json(t)["paused"] != true || r.json(t)["state"] != "paused" {
		t.Fatalf("pause: %d %s", r.status, r.body)
	}
	var ids []string
	for range 3 {
		id, _ := c.donate(gift(1000, "pm_card_visa"))
		ids = append(ids, id)
	}
	v := c.do("GET", "/v1/donations/"+ids[2], "")
	got := v.json(t)
	if got["status"] != "accepted" || got["charging"] != "paused" || got["eta_seconds"] != nil || got["queue_position"] == nil ||
		v.header.Get("Retry-After") == "" {
		t.Fatalf("a gift waiting while paused: %s (Retry-After %q)", v.body, v.header.Get("Retry-After"))
	}
	// The waiting count is refreshed a few times a second.
	deadline := time.Now().Add(30 * time.Second)
	for {
		g := c.do("GET", "/v1/admin/charging", "", admin...).json(t)
		if g["paused"] == true && num(g["waiting"]) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status while paused: %v", g)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a chance for a paused dispatcher to send, wrongly
	if n := len(m.Sandbox.Ledger().PaymentIntents); n != 0 {
		t.Fatalf("%d PaymentIntents created while paused", n)
	}
	if r := c.do("POST", "/v1/admin/charging", `{"paused": false}`, admin...); r.status != http.StatusOK || r.json(t)["state"] != "running" {
		t.Fatalf("resume: %d %s", r.status, r.body)
	}
	for _, id := range ids {
		c.waitStatus(id, "succeeded", 30*time.Second)
	}
	if r := c.do("POST", "/v1/admin/charging", `{}`, admin...); r.status != http.StatusBadRequest {
		t.Fatalf("no paused field: %d", r.status)
	}
}

// TestBreakerWhileProviderDown: the provider stops answering; the breaker
// opens, donations keep being accepted and told that charging waits for
// the provider, the node stays ready (saying why), probes continue, and
// once the provider answers again every gift is charged, once.
func TestBreakerWhileProviderDown(t *testing.T) {
	m := startMain(t, nil)
	c := newClient(t, m)
	cfg := m.Sandbox.Config()
	cfg.Outage = sandbox.OutageReset
	if err := m.Sandbox.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 8 {
		id, _ := c.donate(gift(1000, "pm_card_visa"))
		ids = append(ids, id)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		g := c.do("GET", "/v1/admin/charging", "", "Authorization", "Bearer "+testAdminToken).json(t)
		if g["state"] == "waiting_for_provider" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker never opened: %v", g)
		}
		time.Sleep(50 * time.Millisecond)
	}
	id, _ := c.donate(gift(1000, "pm_card_visa"))
	ids = append(ids, id)
	v := c.do("GET", "/v1/donations/"+id, "").json(t)
	if v["status"] != "accepted" || v["charging"] != "waiting_for_provider" || v["eta_seconds"] == nil {
		t.Fatalf("a gift waiting for the provider: %v", v)
	}
	if r := c.do("GET", "/readyz", ""); r.status != http.StatusOK {
		t.Fatalf("readyz while the provider is down: %d %s", r.status, r.body)
	}
	metrics := string(c.do("GET", "/metrics", "").body)
	if !strings.Contains(metrics, "floodgate_provider_breaker_state 2") && !strings.Contains(metrics, "floodgate_provider_breaker_state 1") {
		t.Fatal("the breaker metric does not show it open")
	}
	cfg.Outage = sandbox.OutageNone
	if err := m.Sandbox.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		c.waitStatus(id, "succeeded", 2*time.Minute)
	}
	if l := m.Sandbox.Ledger(); len(l.ChargedTwice) != 0 || l.Counts.Succeeded != len(ids) {
		t.Fatalf("after the outage: %d succeeded, charged twice %v", l.Counts.Succeeded, l.ChargedTwice)
	}
}
