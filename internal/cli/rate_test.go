package cli

import (
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/config"
)

// TestBacklogSettlesAtTheProviderRate: with the sandbox limited to R
// requests per second and floodgate's provider rates set to R, a backlog of
// 20*R donations settles completely at no less than 95% of R, and no more
// than 0.5% of the provider requests are answered 429.
func TestBacklogSettlesAtTheProviderRate(t *testing.T) {
	if testing.Short() {
		t.Skip("rate test: not in -short")
	}
	const r = 25
	m := startMain(t, func(c *config.Config) {
		c.SandboxRateLimit = r
		c.ProviderRate, c.ProviderGlobalRate = r, r
	})
	c := newClient(t, m)
	const n = 20 * r
	start := time.Now()
	_, _, resume := backlog(t, m, c, n)
	accepted := time.Since(start)
	start = time.Now()
	resume()

	deadline := time.Now().Add(3 * time.Minute)
	for {
		tot := c.totals("demo")
		if num(tot["donations"]) == n && num(tot["pending"]) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not settled after 3 minutes: %v", tot)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	rate := float64(n) / took.Seconds()
	counts := m.Sandbox.Ledger().Counts
	t.Logf("%d donations accepted in %v, then settled in %v: %.1f/s against a limit of %d/s; provider requests %d, 429s %d",
		n, accepted.Round(time.Millisecond), took.Round(time.Millisecond), rate, r, counts.Requests, counts.RateLimited)
	if rate < 0.95*r {
		t.Errorf("settled at %.1f/s, want at least %.1f/s (95%% of %d)", rate, 0.95*r, r)
	}
	if float64(counts.RateLimited) > 0.005*float64(counts.Requests) {
		t.Errorf("%d of %d provider requests answered 429, want at most 0.5%%", counts.RateLimited, counts.Requests)
	}
	if counts.Succeeded != n {
		t.Errorf("%d PaymentIntents succeeded at the provider, want %d", counts.Succeeded, n)
	}
}
