package cli

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sandbox"
)

// backlogRun is a backlog of n donations, accepted while charging was
// paused, then settled against a sandbox limited to r requests per second
// with floodgate's provider rates set to r.
//
// The test gives the dispatcher fewer workers than the sandbox's bucket
// holds (r requests), so that pacing alone keeps it from being refused,
// however late its requests arrive. The sandbox refuses a request only
// when more than r + r*(t-u) arrive in some span from u to t. Of those,
// the ones the dispatcher let go within the span are at most 1 + r*(t-u)
// (every request passes its global pacer: rate r, burst 1, never above
// what was configured); the others were let go earlier and were still on
// their way at u: at most one per worker, plus one from the expirer. A
// stalled machine (a process not scheduled for a second, an fsync holding
// the sandbox's lock) delivers requests late and together, but never more
// than that; with the default 32 workers it could deliver 32 at once into
// a bucket of 25. The provider time-out (a minute) only bounds a hang:
// short of one, no call is given up, and sent again, while its request
// is still on its way.
type backlogRun struct {
	r, n     int
	accepted time.Duration // to accept the backlog
	took     time.Duration // from resuming until every gift was settled
	counts   sandbox.Counts
}

// runBacklog runs a backlog with the given dispatch workers (0: the
// default).
func runBacklog(tb testing.TB, workers int) backlogRun {
	tb.Helper()
	run := backlogRun{r: 25}
	run.n = 20 * run.r
	m := startMain(tb, func(c *config.Config) {
		c.SandboxRateLimit = float64(run.r)
		c.ProviderRate, c.ProviderGlobalRate = float64(run.r), float64(run.r)
		if workers > 0 {
			c.DispatchWorkers = workers
		}
		c.ProviderTimeout = time.Minute // below the lease (2 min), which must outlast a call
	})
	c := newClient(tb, m)
	start := time.Now()
	_, _, resume := backlog(tb, m, c, run.n)
	run.accepted = time.Since(start)
	start = time.Now()
	resume()

	deadline := time.Now().Add(3 * time.Minute)
	for {
		tot := c.totals("demo")
		if num(tot["donations"]) == int64(run.n) && num(tot["pending"]) == 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("backlog not settled after 3 minutes: %v", tot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	run.took = time.Since(start)
	run.counts = m.Sandbox.Ledger().Counts
	return run
}

// TestBacklogSettlesAtTheProviderRate: with the sandbox limited to R
// requests per second and floodgate's provider rates set to R, a backlog of
// 20*R donations settles completely, each charged once, and no more than
// 0.5% of the provider requests are answered 429: the dispatcher paces to
// the limit rather than finding it by being refused. A slow machine sends
// slower, and late requests arrive together, but never more of them than
// the provider's bucket holds (see backlogRun). (How close to R it settles
// is BenchmarkBacklogSettle's figure: the machine's speed sets it too.)
func TestBacklogSettlesAtTheProviderRate(t *testing.T) {
	if testing.Short() {
		t.Skip("rate test: not in -short")
	}
	// 16 workers, the expirer's one call and the pacer's burst of one
	// are 18 requests at once at most, 7 below the bucket.
	run := runBacklog(t, 16)
	counts := run.counts
	t.Logf("%d donations accepted in %v, then settled in %v: %.1f/s against a limit of %d/s; provider requests %d, 429s %d",
		run.n, run.accepted.Round(time.Millisecond), run.took.Round(time.Millisecond), float64(run.n)/run.took.Seconds(), run.r,
		counts.Requests, counts.RateLimited)
	if float64(counts.RateLimited) > 0.005*float64(counts.Requests) {
		t.Errorf("%d of %d provider requests answered 429, want at most 0.5%%", counts.RateLimited, counts.Requests)
	}
	if counts.Succeeded != run.n || counts.PaymentIntents != run.n || counts.ChargedTwice != 0 {
		t.Errorf("%d PaymentIntents, %d succeeded, %d donations charged twice at the provider; want %d, %d, 0",
			counts.PaymentIntents, counts.Succeeded, counts.ChargedTwice, run.n, run.n)
	}
}

// BenchmarkBacklogSettle reports how fast a backlog of 20*R donations
// settles against a provider limited to R = 25 requests per second, as a
// share of R, and the share of provider requests answered 429.
func BenchmarkBacklogSettle(b *testing.B) {
	for b.Loop() {
		run := runBacklog(b, 0)
		b.ReportMetric(100*float64(run.n)/run.took.Seconds()/float64(run.r), "%-of-limit")
		b.ReportMetric(100*float64(run.counts.RateLimited)/float64(max(run.counts.Requests, 1)), "%-429")
		b.ReportMetric(0, "ns/op") // The scenario, not floodgate, sets how long a run takes.
	}
}
