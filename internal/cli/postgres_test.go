package cli

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/config"
	"github.com/floodgate/floodgate/internal/sandbox"
)

// TestPostgresTwoNodes runs two nodes on one PostgreSQL database and one
// shared sandbox: a donation accepted by one is visible on the other at
// once, a key replayed on the other node returns the same id, and the two
// dispatchers together charge every gift exactly once.
func TestPostgresTwoNodes(t *testing.T) {
	url := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if url == "" {
		t.Skip("set FLOODGATE_TEST_POSTGRES=postgres://... to run the PostgreSQL node tests")
	}
	ctx := context.Background()
	storeURL := freshSchemaURL(t, url)

	sb, err := sandbox.New(sandbox.Options{RateLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(func() { sbSrv.Close(); _ = sb.Close() })

	node := func() *Main {
		return startMain(t, func(c *config.Config) {
			c.StoreURL = storeURL
			c.StripeAPIBase = sbSrv.URL
			c.ProviderRate, c.ProviderGlobalRate = 40, 40
		})
	}
	a, b := node(), node()
	ca, cb := newClient(t, a), newClient(t, b)

	key := freshKey()
	body := gift(2500, "pm_card_visa")
	r := ca.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key)
	if r.status != http.StatusAccepted {
		t.Fatalf("node a: %d %s", r.status, r.body)
	}
	id := r.json(t)["id"].(string)
	if got := cb.do("GET", "/v1/donations/"+id, ""); got.status != http.StatusOK {
		t.Fatalf("node b does not see %s at once: %d", id, got.status)
	}
	if again := cb.do("POST", "/v1/campaigns/demo/donations", body, "Idempotency-Key", key); again.status != http.StatusAccepted || again.json(t)["id"] != id {
		t.Fatalf("replay on node b: %d %s", again.status, again.body)
	}

	// Both nodes accept and both dispatch; each gift is charged once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	ids := []string{id}
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ca
			if i%2 == 1 {
				c = cb
			}
			gid, _ := c.donate(gift(500+i, "pm_card_visa"))
			mu.Lock()
			ids = append(ids, gid)
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, gid := range ids {
		ca.waitStatus(gid, "succeeded", 60*time.Second)
	}
	l := sb.Ledger()
	if len(l.ChargedTwice) != 0 {
		t.Fatalf("charged twice: %v", l.ChargedTwice)
	}
	for _, gid := range ids {
		if n := len(l.ByDonation[gid]); n != 1 {
			t.Fatalf("donation %s has %d PaymentIntents", gid, n)
		}
	}
	ta, tb := ca.totals("demo"), cb.totals("demo")
	if num(ta["donations"]) != int64(len(ids)) || fmt.Sprint(ta) != fmt.Sprint(tb) {
		t.Fatalf("totals differ between nodes or are wrong: %v / %v", ta, tb)
	}
	for _, m := range []*Main{a, b} {
		if v, err := m.Store.Donation(ctx, ids[1]); err != nil || v.Status != floodgate.StatusSucceeded {
			t.Fatalf("store view: %+v %v", v, err)
		}
	}
}

// TestPostgresSharedBudget: two nodes on one database, each configured
// with the account's whole rate R, against a provider limited to R. They
// draw on one budget in the database, so together they stay within R:
// every gift settles and almost no request meets a 429. (Pacing alone,
// each node would send at R and the provider would refuse half.)
func TestPostgresSharedBudget(t *testing.T) {
	url := os.Getenv("FLOODGATE_TEST_POSTGRES")
	if url == "" {
		t.Skip("set FLOODGATE_TEST_POSTGRES=postgres://... to run the PostgreSQL node tests")
	}
	if testing.Short() {
		t.Skip("budget test: not in -short")
	}
	storeURL := freshSchemaURL(t, url)
	const r = 20
	sb, err := sandbox.New(sandbox.Options{RateLimit: r})
	if err != nil {
		t.Fatal(err)
	}
	sbSrv := httptest.NewServer(sb)
	t.Cleanup(func() { sbSrv.Close(); _ = sb.Close() })
	node := func() *Main {
		return startMain(t, func(c *config.Config) {
			c.StoreURL, c.StripeAPIBase = storeURL, sbSrv.URL
			c.ProviderRate, c.ProviderGlobalRate = r, r
		})
	}
	a, b := node(), node()
	ca, cb := newClient(t, a), newClient(t, b)
	var ids []string
	for i := range 8 * r {
		c := ca
		if i%2 == 1 {
			c = cb
		}
		id, _ := c.donate(gift(500+i, "pm_card_visa"))
		ids = append(ids, id)
	}
	for _, id := range ids {
		ca.waitStatus(id, "succeeded", 2*time.Minute)
	}
	counts := sb.Ledger().Counts
	t.Logf("%d provider requests, %d answered 429", counts.Requests, counts.RateLimited)
	if float64(counts.RateLimited) > 0.02*float64(counts.Requests) {
		t.Fatalf("%d of %d requests answered 429: the nodes did not share the budget", counts.RateLimited, counts.Requests)
	}
}

// freshSchemaURL creates a schema for the test (dropped at its end) and
// returns the URL that selects it.
func freshSchemaURL(tb testing.TB, url string) string {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("FLOODGATE_TEST_POSTGRES is set but the server cannot be reached: %v", err)
	}
	schema := fmt.Sprintf("fg_nodes_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}
