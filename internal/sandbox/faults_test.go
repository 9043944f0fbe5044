package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func TestRateLimit(t *testing.T) {
	// The test clock stands still, so the bucket refills only when the
	// test moves time.
	e := newEnv(t, Options{RateLimit: 3})
	for i := range 3 {
		if _, err := e.charge(t, fmt.Sprintf("don_%d", i), "pm_card_visa", fmt.Sprintf("k%d", i)); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	_, err := e.charge(t, "don_x", "pm_card_visa", "don_x:1")
	pe := providerError(t, err, floodgate.ProviderRateLimited)
	if pe.HTTPStatus != 429 || pe.Code != "rate_limit" || pe.Type != "invalid_request_error" || pe.RateLimitReason != "global-rate" {
		t.Errorf("429: %+v", pe)
	}
	// The sandbox's own pages are never limited.
	if status, _, body := e.do(t, http.MethodGet, "/_sandbox/ledger?summary=true", "", "", nil); status != 200 || body["counts"] == nil {
		t.Errorf("ledger under the limit: %d", status)
	}
	// A 429 stored nothing: the same key executes once the bucket refills.
	e.clock.Advance(time.Second)
	p, err := e.charge(t, "don_x", "pm_card_visa", "don_x:1")
	if err != nil || p.Status != floodgate.PaymentSucceeded {
		t.Fatalf("after refill: %+v, %v", p, err)
	}
	l := e.s.Ledger()
	if l.Counts.PaymentIntents != 4 || l.Counts.Replays != 0 || l.Counts.RateLimited != 1 {
		t.Errorf("ledger counts %+v", l.Counts)
	}
}

func TestEndpointRateLimit(t *testing.T) {
	e := newEnv(t, Options{EndpointRateLimit: 2})
	var last *floodgate.Payment
	for i := range 2 {
		p, err := e.charge(t, fmt.Sprintf("don_%d", i), "pm_card_visa", fmt.Sprintf("k%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = p
	}
	_, err := e.charge(t, "don_3", "pm_card_visa", "k3")
	if pe := providerError(t, err, floodgate.ProviderRateLimited); pe.RateLimitReason != "endpoint-rate" {
		t.Errorf("reason %q", pe.RateLimitReason)
	}
	// Retrieving is another endpoint with its own budget.
	if _, err := e.pay.Payment(context.Background(), last.ID); err != nil {
		t.Errorf("retrieve: %v", err)
	}
	if _, err := e.pay.FindPayments(context.Background(), floodgate.PaymentQuery{Metadata: floodgate.DonationLookup("don_1")}); err != nil {
		t.Errorf("list: %v", err)
	}

	// The ledger splits the requests by endpoint, the 429 under the one
	// it refused.
	want := map[string]int64{"POST /v1/payment_intents": 3, "GET /v1/payment_intents/{id}": 1, "GET /v1/payment_intents": 1}
	_, _, body := e.do(t, http.MethodGet, "/_sandbox/ledger?summary=true", "", "", nil)
	var counts struct {
		Requests   int64            `json:"requests"`
		ByEndpoint map[string]int64 `json:"by_endpoint"`
	}
	raw, _ := json.Marshal(body["counts"])
	if err := json.Unmarshal(raw, &counts); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(counts.ByEndpoint, want) || counts.Requests != 5 {
		t.Errorf("requests %d by endpoint %v, want 5 by endpoint %v", counts.Requests, counts.ByEndpoint, want)
	}
}

func TestOutage(t *testing.T) {
	e := newEnv(t, Options{Outage: OutageUnavailable})
	_, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	if pe := providerError(t, err, floodgate.ProviderServer); pe.HTTPStatus != 503 {
		t.Errorf("unavailable: %+v", pe)
	}
	postConfig(t, e, `{"outage": "reset"}`, 200)
	_, err = e.charge(t, "don_1", "pm_card_visa", "don_1:1")
	providerError(t, err, floodgate.ProviderNetwork)
	postConfig(t, e, `{"outage": ""}`, 200)
	if _, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1"); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 1 || l.Counts.Outage != 2 {
		t.Errorf("ledger counts %+v", l.Counts)
	}
}

// TestArrive: a test's hook sees each API request before anything is
// done with it; it can hold the request, and a request it drops is
// answered with a closed connection and changes nothing, so that its key
// executes afresh next time.
func TestArrive(t *testing.T) {
	arrived, release := make(chan string, 1), make(chan bool)
	e := newEnv(t, Options{Arrive: func(r *http.Request) bool {
		if r.Method != http.MethodPost {
			return true
		}
		arrived <- r.Header.Get("Idempotency-Key")
		return <-release
	}})
	done := make(chan error, 1)
	go func() {
		_, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
		done <- err
	}()
	if key := <-arrived; key != "don_1:1" {
		t.Fatalf("the hook saw key %q", key)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 0 || l.Counts.Requests != 0 {
		t.Fatalf("a held request was handled: %+v", l.Counts)
	}
	release <- false
	providerError(t, <-done, floodgate.ProviderNetwork)
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 0 || l.Counts.Requests != 0 {
		t.Fatalf("a dropped request was handled: %+v", l.Counts)
	}
	go func() {
		_, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1")
		done <- err
	}()
	<-arrived
	release <- true
	if err := <-done; err != nil {
		t.Fatalf("a request let through: %v", err)
	}
	if l := e.s.Ledger(); l.Counts.PaymentIntents != 1 || l.Counts.Replays != 0 {
		t.Fatalf("the dropped request's key did not execute afresh: %+v", l.Counts)
	}
}

func TestLatency(t *testing.T) {
	e := newEnv(t, Options{Latency: time.Millisecond, LatencyJitter: time.Millisecond, Seed: 7})
	if _, err := e.charge(t, "don_1", "pm_card_visa", "don_1:1"); err != nil {
		t.Fatal(err)
	}
	// A client that gives up during the latency leaves nothing behind.
	slow := newEnv(t, Options{Latency: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := slow.pay.Charge(ctx, floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa", IdempotencyKey: "k"})
	if err != context.DeadlineExceeded {
		t.Errorf("err = %v, want the context's", err)
	}
	if l := slow.s.Ledger(); l.Counts.PaymentIntents != 0 {
		t.Errorf("a request abandoned during latency executed")
	}
}

func postConfig(tb testing.TB, e *env, body string, want int) map[string]any {
	tb.Helper()
	resp, err := http.Post(e.url+"/_sandbox/config", "application/json", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("POST config %s: %d %s", body, resp.StatusCode, raw)
	}
	var v map[string]any
	_ = json.Unmarshal(raw, &v)
	return v
}

func TestConfigEndpoint(t *testing.T) {
	e := newEnv(t, Options{RateLimit: 25, Latency: 150 * time.Millisecond})
	status, _, got := e.do(t, http.MethodGet, "/_sandbox/config", "", "", nil)
	if status != 200 || got["rate_limit"] != 25.0 || got["latency"] != "150ms" || got["fail_rate"] != 0.0 {
		t.Fatalf("GET config: %d %v", status, got)
	}
	got = postConfig(t, e, `{"fail_rate": 0.25, "latency_jitter": "20ms"}`, 200)
	if got["fail_rate"] != 0.25 || got["latency_jitter"] != "20ms" || got["rate_limit"] != 25.0 || got["latency"] != "150ms" {
		t.Errorf("POST changed more than it named: %v", got)
	}
	c := e.s.Config()
	if c.FailRate != 0.25 || c.LatencyJitter != 20*time.Millisecond || c.RateLimit != 25 {
		t.Errorf("config = %+v", c)
	}
	for _, bad := range []string{`{"fail_rate": 2}`, `{"rate_limit": -1}`, `{"latency": "soon"}`, `{"colour": "blue"}`, `{"outage": "partial"}`, `[`} {
		postConfig(t, e, bad, 400)
	}
	if e.s.Config() != c {
		t.Error("a refused POST changed the config")
	}
}

func TestLedgerEndpoint(t *testing.T) {
	e := newEnv(t, Options{})
	for _, d := range []string{"don_1", "don_2", "don_1"} {
		_, _ = e.charge(t, d, "pm_card_chargeDeclined", d+fmt.Sprint(time.Now().UnixNano()))
	}
	status, _, body := e.do(t, http.MethodGet, "/_sandbox/ledger?donation_id=don_1", "", "", nil)
	if status != 200 {
		t.Fatal(status)
	}
	var l Ledger
	raw, _ := json.Marshal(body)
	if err := json.Unmarshal(raw, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.PaymentIntents) != 2 || len(l.ByDonation) != 1 || len(l.ByDonation["don_1"]) != 2 || l.Counts.PaymentIntents != 3 || l.Counts.Donations != 2 {
		t.Errorf("ledger = %+v", l)
	}
	if e := l.PaymentIntents[0]; e.Status != "requires_payment_method" || e.Fingerprint == "" || e.Attempts != 1 || e.PaymentMethod != "pm_card_chargeDeclined" {
		t.Errorf("entry = %+v", e)
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- ListenAndServe(ctx, "127.0.0.1:0", Options{}, func(a net.Addr) { addrs <- a })
	}()
	var addr net.Addr
	select {
	case addr = <-addrs:
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("never ready")
	}
	pay := adapter(t, "http://"+addr.String(), testKey)
	p, err := pay.Charge(context.Background(), floodgate.ChargeRequest{Metadata: floodgate.DonationLookup("don_1"), Amount: 2500, Currency: "eur", PaymentMethod: "pm_card_visa", IdempotencyKey: "k"})
	if err != nil || p.Status != floodgate.PaymentSucceeded {
		t.Fatalf("charge: %+v, %v", p, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ListenAndServe returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("never stopped")
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{WebhookURL: "http://127.0.0.1:1/hook"},
		{WebhookURL: "ftp://x", WebhookSecret: "whsec_x"},
		{FailRate: 1.5},
		{LoseRate: -0.1},
		{RateLimit: -1},
		{Outage: "sometimes"},
		{PublicURL: "not a url"},
		{IdempotencyRetention: -time.Second},
	} {
		if s, err := New(o); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", o)
		}
	}
}
