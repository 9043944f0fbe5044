package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gift is one donation the crash test sends, and what it learned.
type gift struct {
	key    string
	body   string
	amount int64
	card   string

	id       string // set by the first 202
	answered bool
}

// crashRig is a standalone sandbox plus a floodgate server that can be
// killed and restarted on the same port and data directory.
type crashRig struct {
	t          *testing.T
	bin        string
	addr       string
	dataDir    string
	sandboxURL string
	server     *proc
	hc         *http.Client
}

func (r *crashRig) startServer() {
	r.t.Helper()
	r.server = start(r.t, r.dataDir, nil, r.bin, "serve", "--demo",
		"--addr", r.addr, "--metrics-addr", "127.0.0.1:0", "--data-dir", r.dataDir,
		"--stripe-api-base", r.sandboxURL, "--stripe-webhook-secret", "whsec_crashtest",
		"--provider-rate", "100", "--provider-global-rate", "100", "--dispatch-workers", "16",
		"--provider-timeout", "5s", "--lease", "30s", "--log-level", "warn",
		"--address-limit", "0", "--email-limit", "0") // every client here is 127.0.0.1
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := r.hc.Get("http://" + r.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("server not ready:\n%s", r.server.output())
}

// post sends one gift once. A status of 0 with an error means no whole
// answer came; any answer but 202 comes back as its status, without error.
func (r *crashRig) post(g *gift) (status int, id string, err error) {
	status, id, _, err = postGift(r.hc, r.addr, g.key, g.body)
	return status, id, err
}

// postGift sends one gift to campaign demo once and returns the answer's
// status, the id of a 202 and the answer's body. err is set when no whole
// answer came (status 0) or a 202 had no id.
func postGift(hc *http.Client, addr, key, body string) (status int, id string, answer []byte, err error) {
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/campaigns/demo/donations", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", nil, err // the answer was cut: as good as none
	}
	if resp.StatusCode != http.StatusAccepted {
		return resp.StatusCode, "", b, nil
	}
	var v struct{ ID string }
	if err := json.Unmarshal(b, &v); err != nil || v.ID == "" {
		return resp.StatusCode, "", b, fmt.Errorf("202 without an id: %s", b)
	}
	return resp.StatusCode, v.ID, b, nil
}

func (r *crashRig) getJSON(url string, v any) error {
	resp, err := r.hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestCrashLosesNothingChargesOnce is the promise under kill -9: the built
// binary runs with a standalone sandbox; thousands of donations are sent
// concurrently; the server is SIGKILLed while requests are in flight, and
// again while it is charging, and restarted each time; clients retry every
// request that got no answer with the same key. Afterwards every donation
// answered 202 exists and is settled, a replayed key returns the same id,
// and the sandbox's ledger shows exactly one succeeded PaymentIntent for
// every successful gift and none for any other.
func TestCrashLosesNothingChargesOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: not in -short")
	}
	bin := binary(t)
	rig := &crashRig{t: t, bin: bin, addr: freePort(t), dataDir: t.TempDir(),
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}

	// The sandbox outlives every crash of the server. Latency keeps calls
	// in flight when the server dies; some answers are lost after the
	// charge, as networks do, and some charges fail with a 500 stored under
	// their key, so that the lookup path runs too.
	sandboxAddr := freePort(t)
	sb := start(t, t.TempDir(), nil, bin, "sandbox", "--addr", sandboxAddr, "--rate-limit", "150",
		"--latency", "5ms", "--latency-jitter", "20ms", "--lose-rate", "0.03", "--fail-rate", "0.03", "--seed", "7",
		"--webhook-url", "http://"+rig.addr+"/v1/webhooks/stripe", "--webhook-secret", "whsec_crashtest", "--log-level", "warn")
	rig.sandboxURL = "http://" + sb.await(regexp.MustCompile(`sandbox listening on http://(\S+)`), 30*time.Second)
	rig.startServer()

	const n = 3000
	cards := []struct {
		pm string
		ok bool
	}{{"pm_card_visa", true}, {"pm_card_mastercard", true}, {"pm_card_visa", true}, {"pm_card_chargeDeclined", false}}
	gifts := make([]*gift, n)
	for i := range gifts {
		c := cards[i%len(cards)]
		amount := int64(500 + rand.N(20)*100)
		gifts[i] = &gift{key: fmt.Sprintf("crash-%d-%d", time.Now().UnixNano(), i), amount: amount, card: c.pm,
			body: fmt.Sprintf(`{"amount": %d, "currency": "eur", "email": "donor%d@example.org", "payment_method": %q}`, amount, i, c.pm)}
	}

	// Phase 1: send everything with 64 concurrent clients; kill -9 the
	// server a third of the way through, restart it half a second later.
	var sent atomic.Int64
	var wg sync.WaitGroup
	next := make(chan *gift)
	var mu sync.Mutex
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := range next {
				status, id, err := rig.post(g)
				sent.Add(1)
				if err == nil && status == http.StatusAccepted {
					mu.Lock()
					g.id, g.answered = id, true
					mu.Unlock()
				} else if err != nil && strings.Contains(err.Error(), "202 without") {
					t.Error(err)
				}
			}
		}()
	}
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		for sent.Load() < n/3 {
			time.Sleep(time.Millisecond)
		}
		rig.server.kill()
		time.Sleep(500 * time.Millisecond)
		rig.startServer()
	}()
	for _, g := range gifts {
		next <- g
	}
	close(next)
	wg.Wait()
	<-killed

	// Phase 2: while the dispatcher charges, kill -9 again, with calls to
	// the provider in flight.
	time.Sleep(1500 * time.Millisecond)
	rig.server.kill()
	rig.startServer()

	// Phase 3: every request that got no 202 is retried with its key.
	// The deadline bounds a hang; it measures nothing.
	var unanswered int
	for _, g := range gifts {
		if g.answered {
			continue
		}
		unanswered++
		deadline := time.Now().Add(time.Minute)
		for {
			status, id, err := rig.post(g)
			if err == nil && status == http.StatusAccepted {
				g.id, g.answered = id, true
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("gift %s never accepted: %d %v", g.key, status, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("%d gifts, %d needed a retry after the crash", n, unanswered)

	// Every acknowledged gift settles.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var tot struct{ Pending, Raised, Donations int64 }
		if err := rig.getJSON("http://"+rig.addr+"/v1/campaigns/demo/totals", &tot); err != nil {
			t.Fatal(err)
		}
		if tot.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending after 5 minutes: %+v", tot)
		}
		time.Sleep(250 * time.Millisecond)
	}

	// Each id answers 200 and is settled as its card says; replaying each
	// key gives the same id.
	var wantRaised int64
	wantSucceeded := map[string]bool{}
	for _, g := range gifts {
		var d struct{ ID, Status string }
		if err := rig.getJSON("http://"+rig.addr+"/v1/donations/"+g.id, &d); err != nil {
			t.Fatalf("acknowledged gift lost: %v", err)
		}
		okCard := g.card != "pm_card_chargeDeclined"
		if (okCard && d.Status != "succeeded") || (!okCard && d.Status != "failed") {
			t.Fatalf("gift %s with %s is %s", g.id, g.card, d.Status)
		}
		if okCard {
			wantRaised += g.amount
			wantSucceeded[g.id] = true
		}
		if _, id, err := rig.post(g); err != nil || id != g.id {
			t.Fatalf("replaying key %s: id %q (%v), want %s", g.key, id, err, g.id)
		}
	}
	var tot struct{ Raised, Donations, Pending int64 }
	if err := rig.getJSON("http://"+rig.addr+"/v1/campaigns/demo/totals", &tot); err != nil {
		t.Fatal(err)
	}
	if tot.Raised != wantRaised || tot.Donations != int64(len(wantSucceeded)) {
		t.Fatalf("totals raised %d in %d donations, want %d in %d", tot.Raised, tot.Donations, wantRaised, len(wantSucceeded))
	}

	// The provider's own ledger: at most one succeeded PaymentIntent per
	// donation, one for every successful gift, none for another.
	var ledger struct {
		PaymentIntents []struct {
			ID, Status string
			DonationID string `json:"donation_id"`
			Amount     int64
		} `json:"payment_intents"`
		ChargedTwice []string `json:"charged_twice"`
		Counts       struct {
			LostAnswers      int64 `json:"lost_answers"`
			InjectedFailures int64 `json:"injected_failures"`
		}
	}
	if err := rig.getJSON(rig.sandboxURL+"/_sandbox/ledger", &ledger); err != nil {
		t.Fatal(err)
	}
	if len(ledger.ChargedTwice) != 0 {
		t.Fatalf("charged twice: %v", ledger.ChargedTwice)
	}
	succeeded := map[string]int{}
	var charged int64
	for _, pi := range ledger.PaymentIntents {
		if pi.Status != "succeeded" {
			continue
		}
		succeeded[pi.DonationID]++
		charged += pi.Amount
		if !wantSucceeded[pi.DonationID] {
			t.Fatalf("PaymentIntent %s charged donation %q, which is not a successful gift", pi.ID, pi.DonationID)
		}
	}
	for id := range wantSucceeded {
		if succeeded[id] != 1 {
			t.Fatalf("donation %s has %d succeeded PaymentIntents, want 1", id, succeeded[id])
		}
	}
	if charged != wantRaised {
		t.Fatalf("the provider charged %d, floodgate raised %d", charged, wantRaised)
	}
	t.Logf("ledger: %d PaymentIntents, %d succeeded, %d answers lost after the charge, %d stored 500s",
		len(ledger.PaymentIntents), len(succeeded), ledger.Counts.LostAnswers, ledger.Counts.InjectedFailures)
	if ledger.Counts.LostAnswers == 0 || ledger.Counts.InjectedFailures == 0 {
		t.Fatal("no fault was injected: the test proved less than it says")
	}
}
