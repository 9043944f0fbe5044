package postgres_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/postgres"
	"github.com/floodgate/floodgate/internal/storetest"
)

// envURL names the variable that holds the test server's URL.
const envURL = "FLOODGATE_TEST_POSTGRES"

// testURL returns the test server's URL, or skips tb when none is set.
func testURL(tb testing.TB) string {
	tb.Helper()
	url := os.Getenv(envURL)
	if url == "" {
		tb.Skip("set FLOODGATE_TEST_POSTGRES=postgres://... to run the PostgreSQL store tests")
	}
	return url
}

// testSchema returns the server's URL and the name of a schema of tb's own,
// not yet created (Open creates it), which is dropped when tb ends. A set
// but unreachable server fails tb: CI must not pass by skipping.
func testSchema(tb testing.TB) (url, schema string) {
	tb.Helper()
	url = testURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("%s is set but the server cannot be reached: %v", envURL, err)
	}
	_ = conn.Close(ctx)

	var b [8]byte
	_, _ = rand.Read(b[:])
	schema = "floodgate_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// openStore opens a store on schema, closed when tb ends (before the
// schema is dropped: cleanups run last registered first). clock, when not
// nil, also stands in for the database's clock in leases, so that a test
// moves them by hand.
func openStore(tb testing.TB, url, schema string, clock floodgate.Clock) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), postgres.Options{URL: url, MaxConns: 8, Schema: schema, Clock: clock, LeaseClock: clock})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func TestStore(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(tb testing.TB, clock floodgate.Clock) floodgate.Store {
		url, schema := testSchema(tb)
		return openStore(tb, url, schema, clock)
	})
}

func BenchmarkStateChanges(b *testing.B) {
	testURL(b)
	storetest.BenchStateChanges(b, func(tb testing.TB, clock floodgate.Clock) floodgate.Store {
		url, schema := testSchema(tb)
		return openStore(tb, url, schema, clock)
	})
}

func createCampaign(tb testing.TB, s floodgate.Store, id string) {
	tb.Helper()
	c := &floodgate.Campaign{ID: id, Name: "Campaign " + id, Currency: "eur",
		CreatedAt: storetest.Epoch, UpdatedAt: storetest.Epoch}
	c.SetDefaults(storetest.Epoch)
	if err := s.CreateCampaign(context.Background(), c); err != nil {
		tb.Fatalf("CreateCampaign(%s): %v", id, err)
	}
}

func newDonation(campaign, key string, amount int64) *floodgate.Donation {
	h := sha256.Sum256([]byte(campaign + "/" + key))
	return &floodgate.Donation{CampaignID: campaign, IdempotencyKey: key, RequestHash: h[:], Amount: amount,
		Currency: "eur", Email: key + "@example.org", Name: "Donor", PaymentMethod: "pm_card_visa", ClientAddr: "192.0.2.1"}
}

func count(tb testing.TB, s *postgres.Store, query string, args ...any) int64 {
	tb.Helper()
	var n int64
	if err := s.Pool().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		tb.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestConcurrentClaimsDisjoint runs dispatchers on two pools, as on two
// nodes: every donation is claimed by exactly one of them, first from the
// line and then again as an orphan once every lease has expired.
func TestConcurrentClaimsDisjoint(t *testing.T) {
	url, schema := testSchema(t)
	clock := clocktest.New(storetest.Epoch)
	nodes := []*postgres.Store{openStore(t, url, schema, clock), openStore(t, url, schema, clock)}
	ctx := context.Background()
	createCampaign(t, nodes[0], "a")
	createCampaign(t, nodes[0], "b")

	const total = 1200
	var want []string
	for batch := range total / 100 {
		var ds []*floodgate.Donation
		for i := range 100 {
			ds = append(ds, newDonation([]string{"a", "b"}[i%2], fmt.Sprintf("k%d-%d", batch, i), 100))
		}
		res, err := nodes[batch%2].Accept(ctx, storetest.Intakes(ds...))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			want = append(want, r.Donation().ID)
		}
	}

	tokens := map[int64]bool{} // every claim's token: none is issued twice
	claimAll := func(now time.Time) map[string]int {
		clock.Set(now)
		var (
			mu  sync.Mutex
			got = map[string]int{}
			wg  sync.WaitGroup
		)
		for node := range nodes {
			for worker := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					owner := fmt.Sprintf("node%d-%d", node, worker)
					for {
						os, err := nodes[node].ClaimOrders(ctx, owner, 7, time.Minute)
						if err != nil {
							t.Errorf("%s: ClaimOrders: %v", owner, err)
							return
						}
						if len(os) == 0 {
							return
						}
						if !slices.IsSortedFunc(os, func(a, b *floodgate.PaymentOrder) int { return int(a.Seq - b.Seq) }) {
							t.Errorf("%s: claim not sorted by seq", owner)
						}
						mu.Lock()
						for _, o := range os {
							if o.ClaimedBy != owner || o.Status != floodgate.StatusProcessing || o.Token == 0 || tokens[o.Token] {
								t.Errorf("%s: claimed %+v", owner, o)
							}
							tokens[o.Token] = true
							got[o.PaysFor]++
						}
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		return got
	}
	check := func(phase string, got map[string]int) {
		t.Helper()
		if len(got) != total {
			t.Fatalf("%s: %d donations claimed, want %d", phase, len(got), total)
		}
		for _, id := range want {
			if got[id] != 1 {
				t.Fatalf("%s: donation %s claimed %d times, want once", phase, id, got[id])
			}
		}
	}

	check("line", claimAll(storetest.Epoch))
	for _, c := range []string{"a", "b"} {
		tot, err := nodes[1].Totals(ctx, c)
		if err != nil || tot.Waiting != 0 || tot.PendingCount != total/2 {
			t.Fatalf("totals %s = %+v, %v", c, tot, err)
		}
	}
	if n := count(t, nodes[0], `SELECT count(*) FROM order_history WHERE status = 'processing'`); n != total {
		t.Fatalf("%d processing history lines, want %d", n, total)
	}

	// Every lease has expired: each orphan is resumed by exactly one node.
	check("orphans", claimAll(storetest.Epoch.Add(2*time.Minute)))
	if n := count(t, nodes[0], `SELECT count(*) FROM order_history WHERE status = 'processing'`); n != total {
		t.Fatalf("%d processing history lines after resuming orphans, want still %d", n, total)
	}
}

// TestConcurrentAcceptSameKey sends the same keys through two pools at once,
// as two nodes would when a client retries elsewhere: each key is stored
// once, and every answer names that one donation.
func TestConcurrentAcceptSameKey(t *testing.T) {
	url, schema := testSchema(t)
	clock := clocktest.New(storetest.Epoch)
	nodes := []*postgres.Store{openStore(t, url, schema, clock), openStore(t, url, schema, clock)}
	ctx := context.Background()
	createCampaign(t, nodes[0], "c")

	const keys = 300
	var ds []*floodgate.Donation
	for i := range keys {
		ds = append(ds, newDonation("c", fmt.Sprintf("key-%d", i), 100))
	}
	var (
		mu  sync.Mutex
		ids = map[string]map[string]bool{} // key -> donation ids answered
		wg  sync.WaitGroup
	)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := nodes[g%2]
			// Overlapping windows of the same keys, in the same order.
			for start := (g * 37) % 50; start < keys; start += 50 {
				batch := ds[start:min(start+75, keys)]
				res, err := node.Accept(ctx, storetest.Intakes(batch...))
				if err != nil {
					t.Errorf("Accept: %v", err)
					return
				}
				mu.Lock()
				for i, r := range res {
					if r.Err != nil {
						t.Errorf("key %s: %v", batch[i].IdempotencyKey, r.Err)
						continue
					}
					k := batch[i].IdempotencyKey
					if ids[k] == nil {
						ids[k] = map[string]bool{}
					}
					ids[k][r.Donation().ID] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for k, set := range ids {
		if len(set) != 1 {
			t.Fatalf("key %s answered with %d donations, want 1", k, len(set))
		}
	}
	if n := count(t, nodes[0], `SELECT count(*) FROM donations`); n != keys {
		t.Fatalf("%d donations stored, want %d", n, keys)
	}
	// Each donation's history is its acceptance, once.
	for k, set := range ids {
		for id := range set {
			if h, err := nodes[1].History(ctx, id); err != nil || len(h) != 1 || h[0].Status != floodgate.StatusAccepted {
				t.Fatalf("history of key %s's donation = %+v, %v; want its acceptance alone", k, h, err)
			}
		}
	}
	tot, err := nodes[1].Totals(ctx, "c")
	if err != nil || tot.Waiting != keys || tot.PendingCount != keys || tot.Pending != keys*100 {
		t.Fatalf("totals = %+v, %v", tot, err)
	}
}

// TestAcceptDeadlockRetried makes two nodes insert the same two new keys
// in opposite orders, which deadlocks on the unique index: PostgreSQL
// aborts one transaction, the store runs it again, and both callers get
// answers naming the same donations.
//
// To make the deadlock certain, a third session holds a gate key that both
// batches hold between their two keys: each batch inserts its first key,
// then waits on the gate; once the gate commits, each waits on the other's
// first key.
func TestAcceptDeadlockRetried(t *testing.T) {
	url, schema := testSchema(t)
	clock := clocktest.New(storetest.Epoch)
	nodes := []*postgres.Store{openStore(t, url, schema, clock), openStore(t, url, schema, clock)}
	ctx := context.Background()
	createCampaign(t, nodes[0], "c")

	gate := newDonation("c", "gate", 100)
	tx, err := nodes[0].Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var gatePID int
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&gatePID); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `WITH d AS (
			INSERT INTO donations (id, campaign_id, idempotency_key, request_hash, amount,
				currency, email, name, payment_method, anonymous, message, client_addr, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, false, '', $10, now()) RETURNING seq)
		INSERT INTO payment_orders (seq, kind, status, format, updated_at) SELECT seq, 'donation', 'accepted', 1, now() FROM d`,
		floodgate.NewID(floodgate.DonationIDPrefix), gate.CampaignID, gate.IdempotencyKey, gate.RequestHash,
		gate.Amount, gate.Currency, gate.Email, gate.Name, gate.PaymentMethod, gate.ClientAddr); err != nil {
		t.Fatal(err)
	}

	k1, k2 := newDonation("c", "k1", 100), newDonation("c", "k2", 100)
	batches := [2][]*floodgate.Donation{{k1, gate, k2}, {k2, gate, k1}}
	var (
		wg   sync.WaitGroup
		res  [2][]floodgate.AcceptResult
		errs [2]error
	)
	for n := range batches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[n], errs[n] = nodes[n].Accept(ctx, storetest.Intakes(batches[n]...))
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for count(t, nodes[0], `SELECT count(*) FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid))`, gatePID) < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two batches never both waited on the gate key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("Accept: %v / %v", errs[0], errs[1])
	}
	for i, j := range []int{2, 1, 0} { // batch 0's i-th key is batch 1's j-th
		a, b := res[0][i], res[1][j]
		if a.Err != nil || b.Err != nil || a.Donation().ID != b.Donation().ID {
			t.Fatalf("key %s: %+v / %+v", batches[0][i].IdempotencyKey, a, b)
		}
		if i != 1 && a.Replayed == b.Replayed {
			t.Fatalf("key %s: replayed %v / %v, want exactly one insert", batches[0][i].IdempotencyKey, a.Replayed, b.Replayed)
		}
	}
	if !res[0][1].Replayed || !res[1][1].Replayed {
		t.Fatal("the gate key was not answered as a replay on both nodes")
	}
	if n := count(t, nodes[0], `SELECT count(*) FROM donations`); n != 3 {
		t.Fatalf("%d donations stored, want 3", n)
	}
}

// TestMigrationsRace opens several stores at once on a schema that does not
// exist yet: one creates and migrates it, the others wait on the advisory
// lock and find every version applied.
func TestMigrationsRace(t *testing.T) {
	url, schema := testSchema(t)
	const n = 8
	var (
		wg     sync.WaitGroup
		stores [n]*postgres.Store
		errs   [n]error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = postgres.Open(context.Background(), postgres.Options{URL: url, MaxConns: 2, Schema: schema})
		}()
	}
	wg.Wait()
	for i := range n {
		if stores[i] != nil {
			t.Cleanup(func() { _ = stores[i].Close() })
		}
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
	}
	files, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if got := count(t, stores[0], `SELECT count(*) FROM schema_migrations`); got != int64(len(files)) {
		t.Fatalf("schema_migrations has %d rows, want %d (one per migration)", got, len(files))
	}
	createCampaign(t, stores[1], "c")
	if _, err := stores[n-1].Campaign(context.Background(), "c"); err != nil {
		t.Fatalf("campaign made on one store, read on another: %v", err)
	}
}

// TestReopenKeepsEverything closes and reopens a store on the same schema:
// migrations are not applied again and every row is still there.
func TestReopenKeepsEverything(t *testing.T) {
	url, schema := testSchema(t)
	ctx := context.Background()
	s := openStore(t, url, schema, nil)
	createCampaign(t, s, "c")
	secret, err := s.Secret(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = openStore(t, url, schema, nil)
	if c, err := s.Campaign(ctx, "c"); err != nil {
		t.Fatal(err)
	} else if !c.CreatedAt.Equal(storetest.Epoch) || c.CreatedAt.Location() != time.UTC {
		t.Fatalf("CreatedAt = %v, want %v in UTC", c.CreatedAt, storetest.Epoch)
	}
	if again, _ := s.Secret(ctx, "x"); string(again) != string(secret) {
		t.Fatal("secret changed across reopen")
	}
	steps, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM schema_migrations`); n != int64(len(steps)) {
		t.Fatalf("schema_migrations has %d rows after reopen, want %d (one per step)", n, len(steps))
	}
}

// TestSessionSettings reads what every pooled session runs with: commits
// that answer donors are durable, and the tables are the test's schema's.
func TestSessionSettings(t *testing.T) {
	url, schema := testSchema(t)
	s := openStore(t, url, schema, nil)
	ctx := context.Background()
	var syncCommit, current string
	if err := s.Pool().QueryRow(ctx, `SELECT current_setting('synchronous_commit'), current_schema()`).Scan(&syncCommit, &current); err != nil {
		t.Fatal(err)
	}
	if syncCommit != "on" || current != schema {
		t.Fatalf("synchronous_commit = %q, current_schema = %q; want on, %q", syncCommit, current, schema)
	}
}

// TestSecretRace asks two nodes for a new secret at once: both get the
// same bytes.
func TestSecretRace(t *testing.T) {
	url, schema := testSchema(t)
	a, b := openStore(t, url, schema, nil), openStore(t, url, schema, nil)
	ctx := context.Background()
	for i := range 10 {
		name := fmt.Sprintf("s%d", i)
		var (
			wg     sync.WaitGroup
			va, vb []byte
			ea, eb error
		)
		wg.Add(2)
		go func() { defer wg.Done(); va, ea = a.Secret(ctx, name) }()
		go func() { defer wg.Done(); vb, eb = b.Secret(ctx, name) }()
		wg.Wait()
		if ea != nil || eb != nil || len(va) != 32 || string(va) != string(vb) {
			t.Fatalf("Secret(%s) = %x, %v / %x, %v", name, va, ea, vb, eb)
		}
	}
}

// TestOpenUnreachable needs no server: Open fails, it does not hang.
func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.Open(ctx, postgres.Options{URL: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"})
	if err == nil {
		t.Fatal("Open on a closed port succeeded")
	}
}

// BenchmarkAcceptDonations measures the batch insert: batches of 256 new
// donations, one transaction each, from one caller and from several at once
// (as several batchers or nodes). rows/s counts donations committed.
func BenchmarkAcceptDonations(b *testing.B) {
	const batch = 256
	url, schema := testSchema(b)
	s := openStore(b, url, schema, nil)
	createCampaign(b, s, "c")
	ctx := context.Background()
	var next atomic.Int64
	makeBatch := func() []*floodgate.Donation {
		ds := make([]*floodgate.Donation, batch)
		for i := range ds {
			ds[i] = newDonation("c", fmt.Sprintf("bench-%d", next.Add(1)), 1000)
			ds[i].Declaration = &floodgate.Declaration{Scheme: floodgate.SchemeIE, TextVersion: "2026-01", FirstName: "A", LastName: "B"}
		}
		return ds
	}
	accept := func(b *testing.B, ds []*floodgate.Donation) {
		res, err := s.Accept(ctx, storetest.Intakes(ds...))
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Err != nil || res[0].Replayed {
			b.Fatalf("result = %+v", res[0])
		}
	}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			ds := makeBatch()
			b.StartTimer()
			accept(b, ds)
		}
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(2) // 2 x GOMAXPROCS callers, within MaxConns
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				accept(b, makeBatch())
			}
		})
		b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
	})
}
