package cli

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// fillLine posts n donations from 16 clients and returns their ids in the
// order they were answered, and their donor tokens.
func fillLine(t testing.TB, c *client, n int) ([]string, map[string]string) {
	return fillLineThen(t, c, n, 0, nil)
}

// fillLineThen is fillLine with arrivals every interval (0: as fast as
// the clients go), calling then (when not nil) with each id as soon as it
// is accepted, from the client that posted it.
func fillLineThen(t testing.TB, c *client, n int, interval time.Duration, then func(id string)) ([]string, map[string]string) {
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
func backlog(t testing.TB, m *Main, c *client, n int) (ids []string, tokens map[string]string, resume func()) {
	t.Helper()
	if err := m.Control.Pause(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	ids, tokens = fillLine(t, c, n)
	return ids, tokens, func() {
		t.Helper()
		if err := m.Control.Pause(context.Background(), false); err != nil {
			t.Fatal(err)
		}
	}
}

// adaptRun is what happened after the provider's limit was halved in the
// middle of a backlog, over a window that opens ten seconds later (the
// time the dispatcher has to adapt).
type adaptRun struct {
	high, low float64
	elapsed   time.Duration // the window, as long as it really was
	// succeeded, requests and refused are the provider's counts over the
	// window.
	succeeded, requests, refused int64
	// allowed is the rate the dispatcher allowed itself, averaged over
	// samples a quarter of a second apart.
	allowed float64
}

func runAdapt(tb testing.TB) adaptRun {
	tb.Helper()
	run := adaptRun{high: 40, low: 20}
	m := startMain(tb, func(c *config.Config) {
		c.SandboxRateLimit = run.high
		c.ProviderRate, c.ProviderGlobalRate = run.high, run.high
	})
	c := newClient(tb, m)
	_, _, resume := backlog(tb, m, c, 50*int(run.high)) // more than the run drains
	resume()

	time.Sleep(5 * time.Second)
	cfg := m.Sandbox.Config()
	cfg.RateLimit = run.low
	if err := m.Sandbox.SetConfig(cfg); err != nil {
		tb.Fatal(err)
	}
	time.Sleep(10 * time.Second)
	before, start := m.Sandbox.Ledger().Counts, time.Now()
	var sum float64
	var samples int
	for time.Since(start) < 20*time.Second {
		sum += metric(tb, m, "floodgate_provider_rate_allowed")
		samples++
		time.Sleep(250 * time.Millisecond)
	}
	after := m.Sandbox.Ledger().Counts
	run.elapsed = time.Since(start)
	run.succeeded = int64(after.Succeeded - before.Succeeded)
	run.requests, run.refused = int64(after.Requests-before.Requests), int64(after.RateLimited-before.RateLimited)
	run.allowed = sum / float64(samples)
	return run
}

// TestPacingAdaptsToALowerLimit: the provider's limit is halved in the
// middle of a backlog. Within ten seconds the dispatcher paces itself to
// the new limit: from then on the rate it allows itself averages no less
// than 80% of it, and few of its requests are refused. Both are the
// dispatcher's own decisions, which a slow machine does not lower: one
// that cannot send as fast as allowed is refused less and cut less. (How
// fast it really settles is BenchmarkPacingAdaptsToALowerLimit's figure.)
func TestPacingAdaptsToALowerLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("pacing test: not in -short")
	}
	r := runAdapt(t)
	t.Logf("limit lowered from %g/s to %g/s; over %.1f s from 10 s after: %.1f/s allowed on average, %.1f gifts/s settled, %d requests, %d refused",
		r.high, r.low, r.elapsed.Seconds(), r.allowed, float64(r.succeeded)/r.elapsed.Seconds(), r.requests, r.refused)
	if r.allowed < 0.8*r.low {
		t.Errorf("allowing itself %.1f/s on average after adapting, want at least %.1f/s (80%% of the new limit)", r.allowed, 0.8*r.low)
	}
	if float64(r.refused) > 0.05*float64(r.requests) {
		t.Errorf("%d of %d requests refused after adapting, want at most 5%%", r.refused, r.requests)
	}
	// The sandbox lets at most its rate through, plus one second's worth
	// saved up: more means the limit is not what the test thinks.
	if limit := r.low * (r.elapsed.Seconds() + 1); float64(r.succeeded) > limit {
		t.Errorf("%d gifts settled in %.1f s against a limit of %g/s: the limit is not what the test thinks", r.succeeded, r.elapsed.Seconds(), r.low)
	}
	if r.succeeded == 0 {
		t.Error("nothing settled after the limit was lowered")
	}
}

// BenchmarkPacingAdaptsToALowerLimit reports how fast gifts settle once
// the dispatcher has adapted to a provider limit halved from 40/s to 20/s,
// as a share of the new limit, and the share of requests refused.
func BenchmarkPacingAdaptsToALowerLimit(b *testing.B) {
	for b.Loop() {
		r := runAdapt(b)
		b.ReportMetric(100*float64(r.succeeded)/r.elapsed.Seconds()/r.low, "%-of-limit")
		b.ReportMetric(100*float64(r.refused)/float64(max(r.requests, 1)), "%-refused")
		b.ReportMetric(r.allowed, "allowed/s")
		b.ReportMetric(0, "ns/op") // The scenario, not floodgate, sets how long a run takes.
	}
}

// TestPredictedWaits holds each wait a donor is told to what the server
// itself did, so that a slow machine, which slows the line and the
// figures the prediction came from alike, cannot change the verdict. A
// wait is predicted from two inputs: the gifts still ahead (those waiting,
// and those claimed and in flight), and the send rate the dispatcher
// measured over the last seconds. Both are read back from the server's
// own history afterwards: the gifts charged between the donor's ask and
// its own charge, and the charges per second in the seconds before the
// ask. The provider is slower than the rate floodgate may use (two
// dispatch workers, 200 ms a call: 10 a second at most, against 25
// allowed), so a prediction from the allowed rate instead of the measured
// one is wrong by more than half, as is one that leaves the gifts ahead
// out.
func TestPredictedWaits(t *testing.T) {
	if testing.Short() {
		t.Skip("prediction test: not in -short")
	}
	const (
		allowed = 25
		workers = 2
		n       = 250
		// warmup is how long the line runs before donors ask: the
		// measured rate is used once the line has been busy for five
		// seconds, and the once-a-second loop that measures it may be
		// late on a busy machine.
		warmup = 15 * time.Second
		// window is the span the dispatcher measures its send rate over.
		window = 5 * time.Second
	)
	m := startMain(t, func(c *config.Config) {
		c.ProviderRate, c.ProviderGlobalRate = allowed, allowed
		c.SandboxRateLimit = allowed
		c.DispatchWorkers = workers
		c.SandboxLatency = 200 * time.Millisecond
		// Few gifts in hand, so that the place in line, not the gifts
		// claimed ahead of it, makes most of each wait.
		c.DispatchQueue, c.DispatchClaim = 8, 8
	})
	c := newClient(t, m)
	ids, tokens, resume := backlog(t, m, c, n)
	resume()
	time.Sleep(warmup)

	// Every donor still waiting asks once; t0 and t1 bracket the moment
	// the server answered.
	type ask struct {
		id       string
		t0, t1   time.Time
		pos, eta int64
	}
	var asks []ask
	for _, id := range ids {
		t0 := time.Now()
		v := c.do("GET", "/v1/donations/"+id, "").json(t)
		t1 := time.Now()
		if v["status"] != "accepted" {
			continue
		}
		pos, okPos := v["queue_position"].(float64)
		eta, okETA := v["eta_seconds"].(float64)
		if !okPos || !okETA {
			t.Fatalf("a waiting donor told no place or wait: %v", v)
		}
		asks = append(asks, ask{id: id, t0: t0, t1: t1, pos: int64(pos), eta: int64(eta)})
	}
	if len(asks) < 50 {
		t.Fatalf("only %d of %d donors still waited after %v: the provider was faster than it can be", len(asks), n, warmup)
	}

	// The server's history: when each gift was charged.
	settled := settledAt(t, c, ids, tokens, 5*time.Minute)
	times := make([]time.Time, 0, len(settled))
	for _, at := range settled {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	// charged counts the gifts charged in (from, to].
	charged := func(from, to time.Time) int {
		lo, _ := slices.BinarySearchFunc(times, from, func(a, b time.Time) int {
			if a.After(b) {
				return 1
			}
			return -1
		})
		hi, _ := slices.BinarySearchFunc(times, to, func(a, b time.Time) int {
			if a.After(b) {
				return 1
			}
			return -1
		})
		return hi - lo
	}
	// rates returns the least and the most charges per second over any
	// measuring window that ended between from and to: the dispatcher
	// measured its rate at one of those moments.
	rates := func(from, to time.Time) (lo, hi float64) {
		lo = math.Inf(1)
		for at := from; !at.After(to); at = at.Add(20 * time.Millisecond) {
			r := float64(charged(at.Add(-window), at)) / window.Seconds()
			lo, hi = min(lo, r), max(hi, r)
		}
		return lo, hi
	}

	// Slack: two workers may finish neighbours out of order, and the
	// line's head is read four times a second (a stale head makes the
	// place an over-estimate, never an under-estimate; the 3 s before the
	// ask cover it). The measured rate is the sends answered in its
	// window, the history's the settlements: within a tenth.
	const (
		slack     = workers
		staleHead = 3 * time.Second
	)
	var long int // asks far enough back that a wrong rate or a place left out shows
	for _, a := range asks {
		mine := settled[a.id]
		after := charged(a.t1, mine)                 // at most the gifts ahead, and this one
		since := charged(a.t0.Add(-staleHead), mine) // at least the gifts ahead when the head was read
		lo, hi := rates(a.t0.Add(-time.Second-staleHead), a.t1)
		lo, hi = 0.9*lo, 1.1*hi
		if lo <= 0 {
			t.Fatalf("no charge in the %v before %s's ask: %d of %d charged by then", window, a.id, charged(time.Time{}, a.t0), n)
		}
		if a.pos >= 30 {
			long++
		}
		switch {
		case a.eta < 1:
			t.Errorf("%s: told a wait of %d s while waiting", a.id, a.eta)
		case a.pos < 0 || a.pos > int64(since-1+slack):
			t.Errorf("%s: told %d ahead; %d were charged before it from %v before the ask", a.id, a.pos, since-1, staleHead)
		// eta_seconds rounds up: the wait was in (eta-1, eta].
		case float64(a.eta) < float64(after-slack)/hi:
			t.Errorf("%s: told %d s; %d gifts were charged from the ask to its own, at most %.1f/s in the seconds before it: at least %.1f s",
				a.id, a.eta, after, hi, float64(after-slack)/hi)
		case float64(a.eta-1) > float64(since+slack)/lo:
			t.Errorf("%s: told %d s; %d gifts were charged from %v before the ask to its own, at least %.1f/s in the seconds before it: at most %.1f s",
				a.id, a.eta, since, staleHead, lo, float64(since+slack)/lo)
		}
	}
	if long < 20 {
		t.Fatalf("only %d donors asked 30 or more places back: too few to tell a right wait from a wrong one", long)
	}
	t.Logf("%d donors asked after %v, %d of them 30 or more places back", len(asks), warmup, long)
}

// settledAt waits until every gift in ids has succeeded and returns when
// each did, from its history: the server's own record, which a poll's lag
// does not blur.
func settledAt(t testing.TB, c *client, ids []string, tokens map[string]string, timeout time.Duration) map[string]time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		tot := c.totals("demo")
		if num(tot["pending"]) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gifts unsettled after %v: %v", timeout, tot)
		}
		time.Sleep(100 * time.Millisecond)
	}
	out := make(map[string]time.Time, len(ids))
	for _, id := range ids {
		full := c.do("GET", "/v1/donations/"+id, "", "Authorization", "Bearer "+tokens[id]).json(t)
		for _, h := range full["history"].([]any) {
			e := h.(map[string]any)
			if e["status"] == "succeeded" {
				at, err := time.Parse(time.RFC3339Nano, e["at"].(string))
				if err != nil {
					t.Fatal(err)
				}
				out[id] = at
			}
		}
		if out[id].IsZero() {
			t.Fatalf("no succeeded line in %s's history: %v", id, full["history"])
		}
	}
	return out
}

// BenchmarkPredictedWaits reports how well the waits donors are told
// match the waits they have, on the wall clock: donors arrive at four
// times the provider's rate of 25/s, each asks as soon as it is accepted,
// as the donation page does, and its actual wait runs to its charge in
// the server's history. The figure is the share of predictions within 20%
// + 2 s of the actual wait; a busy machine lowers it, since the line then
// moves slower than the rate measured before each ask, so it is measured
// here and not asserted (TestPredictedWaits checks the prediction).
func BenchmarkPredictedWaits(b *testing.B) {
	for b.Loop() {
		within, told, arrived := predictedWaits(b)
		b.ReportMetric(100*float64(within)/float64(max(told, 1)), "%-within-20%+2s")
		b.ReportMetric(float64(told), "donors-told")
		b.ReportMetric(float64(arrived), "donors")
		b.ReportMetric(0, "ns/op") // The scenario, not floodgate, sets how long a run takes.
	}
}

// predictedWaits runs BenchmarkPredictedWaits once: of the donors who
// arrived, told were told a wait, and within of those were told one
// within 20% + 2 s of the wait they had.
func predictedWaits(tb testing.TB) (within, told, arrived int) {
	const r = 25
	m := startMain(tb, func(c *config.Config) {
		c.SandboxRateLimit = r
		c.ProviderRate, c.ProviderGlobalRate = r, r
	})
	c := newClient(tb, m)
	type wait struct {
		asked     time.Time
		predicted time.Duration
	}
	var mu sync.Mutex
	waits := map[string]*wait{}
	ids, tokens := fillLineThen(tb, c, 15*r, time.Second/(4*r), func(id string) {
		asked := time.Now()
		v := c.do("GET", "/v1/donations/"+id, "").json(tb)
		eta, ok := v["eta_seconds"].(float64)
		if !ok {
			return // already settled: nobody was told a wait
		}
		mu.Lock()
		waits[id] = &wait{asked: asked, predicted: time.Duration(eta * float64(time.Second))}
		mu.Unlock()
	})
	settled := settledAt(tb, c, ids, tokens, 5*time.Minute)
	for id, w := range waits {
		actual := settled[id].Sub(w.asked)
		if (w.predicted - actual).Abs() <= actual/5+2*time.Second {
			within++
		}
	}
	return within, len(waits), len(ids)
}
