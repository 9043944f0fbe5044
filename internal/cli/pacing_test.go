package cli

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// fillLine posts n donations from 16 clients and returns their ids in the
// order they were answered, and their donor tokens.
func fillLine(t *testing.T, c *client, n int) ([]string, map[string]string) {
	return fillLineThen(t, c, n, 0, nil)
}

// fillLineThen is fillLine with arrivals every interval (0: as fast as
// the clients go), calling then (when not nil) with each id as soon as it
// is accepted, from the client that posted it.
func fillLineThen(t *testing.T, c *client, n int, interval time.Duration, then func(id string)) ([]string, map[string]string) {
	t.Helper()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		ids    []string
		tokens = map[string]string{}
	)
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				r := c.do("POST", "/v1/campaigns/demo/donations",
					fmt.Sprintf(`{"amount": %d, "currency": "eur", "email": "d%d@example.org", "payment_method": "pm_card_visa"}`, 500+i, i),
					"Idempotency-Key", freshKey())
				if r.status != http.StatusAccepted {
					t.Errorf("POST: %d %s", r.status, r.body)
					continue
				}
				v := r.json(t)
				mu.Lock()
				ids = append(ids, v["id"].(string))
				tokens[v["id"].(string)] = v["donor_token"].(string)
				mu.Unlock()
				if then != nil {
					then(v["id"].(string))
				}
			}
		}()
	}
	var tick <-chan time.Time
	if interval > 0 {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for i := range n {
		if tick != nil {
			<-tick
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return ids, tokens
}

// backlog fills the line with n donations while charging is paused, so
// that the line is whole however slowly a busy machine accepts them, and
// returns their ids and tokens; charging resumes when the caller says.
func backlog(t *testing.T, m *Main, c *client, n int) (ids []string, tokens map[string]string, resume func()) {
	t.Helper()
	if err := m.Dispatcher.Pause(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ids, tokens = fillLine(t, c, n)
	return ids, tokens, func() {
		t.Helper()
		if err := m.Dispatcher.Pause(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPacingAdaptsToALowerLimit: the provider's limit is halved in the
// middle of a backlog. Within ten seconds the dispatcher sends at the new
// limit: from then on it settles gifts at no less than 80% of it, with few
// requests refused.
func TestPacingAdaptsToALowerLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("pacing test: not in -short")
	}
	const high, low = 40, 20
	m := startMain(t, func(c *config.Config) {
		c.SandboxRateLimit = high
		c.ProviderRate, c.ProviderGlobalRate = high, high
	})
	c := newClient(t, m)
	_, _, resume := backlog(t, m, c, 50*high) // more than the run drains
	resume()

	time.Sleep(5 * time.Second)
	cfg := m.Sandbox.Config()
	cfg.RateLimit = low
	if err := m.Sandbox.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	lowered := time.Now()
	time.Sleep(10 * time.Second) // the time the dispatcher has to adapt
	before := m.Sandbox.Ledger().Counts
	window := 20 * time.Second
	time.Sleep(window)
	after := m.Sandbox.Ledger().Counts
	settled := float64(after.Succeeded-before.Succeeded) / window.Seconds()
	requests, refused := after.Requests-before.Requests, after.RateLimited-before.RateLimited
	t.Logf("limit lowered from %d/s to %d/s; from 10 s after: %.1f gifts/s, %d requests, %d refused (%.1f s after the change)",
		high, low, settled, requests, refused, time.Since(lowered).Seconds())
	if settled < 0.8*low {
		t.Errorf("settling %.1f/s after adapting, want at least %.1f/s (80%% of the new limit)", settled, 0.8*low)
	}
	if settled > 1.05*low {
		t.Errorf("settling %.1f/s against a limit of %d/s: the limit is not what the test thinks", settled, low)
	}
	if float64(refused) > 0.05*float64(requests) {
		t.Errorf("%d of %d requests refused after adapting, want at most 5%%", refused, requests)
	}
}

// TestPredictedWaits: every donor of a backlog is told, when accepted,
// how long the wait will be; for at least 90% of them the prediction is
// within 20% + 2 s of the actual wait.
func TestPredictedWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("prediction test: not in -short")
	}
	const r = 25
	m := startMain(t, func(c *config.Config) {
		c.SandboxRateLimit = r
		c.ProviderRate, c.ProviderGlobalRate = r, r
	})
	c := newClient(t, m)
	type wait struct {
		asked     time.Time
		predicted time.Duration
		settled   time.Time
	}
	// Donors arrive at four times the provider's rate, so the line grows
	// while it moves (and the test's own clients leave the machine to the
	// dispatcher); each asks at once after the 202, as the donation page
	// does.
	var mu sync.Mutex
	waits := map[string]*wait{}
	ids, tokens := fillLineThen(t, c, 15*r, time.Second/(4*r), func(id string) {
		asked := time.Now()
		v := c.do("GET", "/v1/donations/"+id, "").json(t)
		eta, ok := v["eta_seconds"].(float64)
		if !ok {
			return // already settled: nobody was told a wait
		}
		mu.Lock()
		waits[id] = &wait{asked: asked, predicted: time.Duration(eta * float64(time.Second))}
		mu.Unlock()
	})
	if len(waits) < len(ids)/2 {
		t.Fatalf("only %d of %d donors were told a wait: the line drained before they asked", len(waits), len(ids))
	}
	deadline := time.Now().Add(3 * time.Minute)
	for id := range waits {
		for c.do("GET", "/v1/donations/"+id, "").json(t)["status"] != "succeeded" {
			if time.Now().After(deadline) {
				t.Fatalf("gift %s unsettled after 3 minutes", id)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// When it settled, from the server's own history: a poll would
		// add its own lag to the actual wait.
		full := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+tokens[id]).json(t)
		for _, h := range full["history"].([]any) {
			e := h.(map[string]any)
			if e["status"] == "succeeded" {
				at, err := time.Parse(time.RFC3339Nano, e["at"].(string))
				if err != nil {
					t.Fatal(err)
				}
				waits[id].settled = at
			}
		}
		if waits[id].settled.IsZero() {
			t.Fatalf("no succeeded line in %s's history: %v", id, full["history"])
		}
	}
	var misses []float64
	within := 0
	for _, w := range waits {
		actual := w.settled.Sub(w.asked)
		diff := (w.predicted - actual).Abs()
		if diff <= actual/5+2*time.Second {
			within++
		} else {
			misses = append(misses, (w.predicted - actual).Seconds())
		}
	}
	sort.Float64s(misses)
	share := float64(within) / float64(len(waits))
	t.Logf("%d of %d predictions within 20%% + 2 s (%.0f%%; %d donors settled before they asked); misses (predicted - actual, s): %v",
		within, len(waits), 100*share, len(ids)-len(waits), misses)
	if share < 0.9 {
		t.Errorf("only %.0f%% of predicted waits within 20%% + 2 s of the actual wait, want 90%%", 100*share)
	}
}
