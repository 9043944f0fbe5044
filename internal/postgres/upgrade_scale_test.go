package postgres_test

import (
	"context"
	"fmt"
	"maps"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/migration"
	"github.com/floodgate/floodgate/internal/postgres"
)

// The migration measurement writes about a gigabyte into the test server,
// so it runs only when asked:
//
//	FLOODGATE_BENCH_MIGRATE=1 go test -run '^TestMigrateMillionDonations$' -count=1 -timeout 60m -v ./internal/postgres/
//
// It works in a schema of its own on FLOODGATE_TEST_POSTGRES (as every
// test of this package does), dropped at the end.
// FLOODGATE_BENCH_MIGRATE_COUNT changes the number of donations (for a
// quick trial of the measurement itself); FLOODGATE_BENCH_MIGRATE_STEPS=1
// first times each statement of the migration, in a transaction rolled
// back before the measured one (which then finds the caches warmer);
// FLOODGATE_BENCH_MIGRATE_REWRITE=1 afterwards rewrites the donations
// (VACUUM FULL), which gives back the space of the columns the migration
// dropped, and reports how long that took and what it gave back.
const (
	migrateEnv        = "FLOODGATE_BENCH_MIGRATE"
	migrateCountEnv   = "FLOODGATE_BENCH_MIGRATE_COUNT"
	migrateStepsEnv   = "FLOODGATE_BENCH_MIGRATE_STEPS"
	migrateRewriteEnv = "FLOODGATE_BENCH_MIGRATE_REWRITE"
	migrateChunk      = 100_000
)

// migrateFill inserts the donations numbered $1 to $2 of schema version 3,
// each a function of its number alone: keys, hashes and ids of the sizes
// clients and the provider use, and a mix of states, per thousand: 900
// succeeded (1 in 100 of them partly refunded, 1 in 500 disputed), 50
// failed, 20 canceled (half of them 3-D Secure that timed out), 10 in
// requires_action, 5 being charged and 15 waiting in line. Gifts arrive
// 3.6 ms apart (a million in an hour).
const migrateFill = `
INSERT INTO donations (id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, status, attempt, key_since, payment_intent_id,
	client_secret, next_action, failure_code, action_since, claimed_by, lease_until, created_at, updated_at,
	refunded, disputed)
SELECT 'don_' || substr(md5(i::text), 1, 28) || lpad(to_hex(i), 8, '0'), 'night', md5('key' || i)::uuid::text,
	sha256(('request' || i)::bytea), amount, 'eur', 'donor' || i || '@example.org', 'Donor ' || i,
	'pm_' || substr(md5('pm' || i), 1, 24), i % 10 = 0, CASE WHEN i % 4 = 0 THEN 'Go on, well done all!' ELSE '' END,
	CASE WHEN i % 3 = 0 THEN jsonb_build_object('scheme', 'ie', 'text_version', '2026-01', 'first_name', 'Donor',
		'last_name', 'Number ' || i) END,
	'10.' || (i >> 16) % 256 || '.' || (i >> 8) % 256 || '.' || i % 256, status,
	CASE WHEN status = 'failed' AND i % 2 = 0 THEN 1 ELSE 0 END,
	CASE WHEN charged THEN at + interval '2 s' END,
	CASE WHEN charged AND status <> 'processing' THEN 'pi_' || substr(md5('pi' || i), 1, 24) END,
	CASE WHEN action THEN 'pi_' || substr(md5('pi' || i), 1, 24) || '_secret_' || substr(md5('s' || i), 1, 25) END,
	CASE WHEN status = 'requires_action' THEN '{"type":"use_stripe_sdk","use_stripe_sdk":{"type":"three_d_secure_redirect","stripe_js":"https://hooks.stripe.com/3d_secure_2/hosted"}}'::json END,
	CASE WHEN status = 'failed' THEN 'card_declined' END,
	CASE WHEN action THEN at + interval '3 s' END,
	CASE WHEN status = 'processing' THEN 'node-' || i % 3 END,
	CASE WHEN status = 'processing' THEN at + interval '1 min' END,
	at, at + interval '5 s',
	CASE WHEN status = 'succeeded' AND i % 100 = 7 THEN amount / 2 ELSE 0 END,
	CASE WHEN status = 'succeeded' AND i % 500 = 11 THEN amount ELSE 0 END
FROM (
	SELECT i, 500 + i % 5000 AS amount, $3::timestamptz + i * interval '3.6 ms' AS at, s.status,
		s.status NOT IN ('accepted') AND NOT (s.status = 'canceled' AND i % 2 = 0) AS charged,
		s.status = 'requires_action' OR (s.status = 'canceled' AND i % 2 = 1) AS action
	FROM generate_series($1::bigint, $2::bigint) AS i,
	LATERAL (SELECT CASE
		WHEN i % 1000 < 900 THEN 'succeeded' WHEN i % 1000 < 950 THEN 'failed' WHEN i % 1000 < 970 THEN 'canceled'
		WHEN i % 1000 < 980 THEN 'requires_action' WHEN i % 1000 < 985 THEN 'processing' ELSE 'accepted' END AS status) AS s
) AS g
ORDER BY i`

// migrateHistory writes each donation's history as the release before
// payment orders wrote it: accepted, then each step its state went
// through.
const migrateHistory = `
INSERT INTO donation_history (donation_seq, n, status, at, failure_code, note)
SELECT d.seq, h.n - 1, h.status, d.created_at + (h.n - 1) * interval '1 s',
	CASE WHEN h.status = 'failed' THEN 'card_declined' ELSE '' END,
	CASE WHEN h.status = 'canceled' AND d.action_since IS NOT NULL THEN 'action timeout' ELSE '' END
FROM donations d, unnest(CASE
	WHEN d.status = 'accepted' THEN ARRAY['accepted']
	WHEN d.status = 'processing' THEN ARRAY['accepted', 'processing']
	WHEN d.status = 'requires_action' THEN ARRAY['accepted', 'processing', 'requires_action']
	WHEN d.status = 'canceled' AND d.action_since IS NOT NULL THEN ARRAY['accepted', 'processing', 'requires_action', 'canceled']
	WHEN d.status = 'canceled' THEN ARRAY['accepted', 'canceled']
	ELSE ARRAY['accepted', 'processing', d.status] END) WITH ORDINALITY AS h (status, n)`

// migrateTotals sets the campaign's totals to what its donations make.
const migrateTotals = `
INSERT INTO totals (campaign_id, raised, donations, pending, pending_count, waiting, updated_at)
SELECT 'night',
	COALESCE(sum(amount - refunded - disputed) FILTER (WHERE status = 'succeeded'), 0),
	count(*) FILTER (WHERE status = 'succeeded'),
	COALESCE(sum(amount) FILTER (WHERE status IN ('accepted', 'processing', 'requires_action')), 0),
	count(*) FILTER (WHERE status IN ('accepted', 'processing', 'requires_action')),
	count(*) FILTER (WHERE status = 'accepted'), now()
FROM donations`

// migratePrint is, per state, how many payments stand in it and a sum of
// a hash of every column the migration moves, read from the donations
// before it and from the payment orders after: equal sums mean every row
// moved with every value. $1 is donations or payment_orders.
const migratePrint = `
SELECT status, count(*), sum(hashtextextended(ROW(seq, status, attempt, key_since, payment_intent_id, client_secret,
	next_action::text, failure_code, action_since, claimed_by, lease_until, refunded, disputed, updated_at)::text, 0))::text
FROM %s GROUP BY status ORDER BY status`

type statePrint struct {
	count int64
	sum   string
}

// TestMigrateMillionDonations fills a schema at version 3 with a million
// donations (and their history) in a mix of states, then opens it with
// this code, which migrates it to version 4: how long Open takes, the
// tables' sizes before and after, and that every donation has its order
// with every value it held. The figures go to BENCHMARKS.md; the test
// fails on a wrong result, never on a figure.
func TestMigrateMillionDonations(t *testing.T) {
	if os.Getenv(migrateEnv) != "1" {
		t.Skipf("%s=1 runs the schema-3 to schema-4 migration of a million donations (it writes about a gigabyte)", migrateEnv)
	}
	n := int64(1_000_000)
	if v := os.Getenv(migrateCountEnv); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 1000 {
			t.Fatalf("%s=%q: want a count of at least 1000", migrateCountEnv, v)
		}
	}
	url, schema := testSchema(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := execer(t, conn)
	var server string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version') || ', shared_buffers ' || current_setting('shared_buffers') ||
		', maintenance_work_mem ' || current_setting('maintenance_work_mem') || ', max_wal_size ' || current_setting('max_wal_size') ||
		', synchronous_commit ' || current_setting('synchronous_commit')`).Scan(&server); err != nil {
		t.Fatal(err)
	}
	t.Logf("server: PostgreSQL %s", server)

	// Schema version 3, as the release before payment orders left it.
	ms := createVersion3(t, conn, schema)
	epoch := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	exec(`INSERT INTO campaigns (id, name, currency, goal, min_amount, max_amount, opens_at, suggested_amounts, tax_schemes,
		created_at, updated_at) VALUES ('night', 'Night', 'eur', 0, 50, 100000000, $1, '{1000,2500}', '{ie}', $1, $1)`, epoch)

	start := time.Now()
	for from := int64(1); from <= n; from += migrateChunk {
		exec(migrateFill, from, min(from+migrateChunk-1, n), epoch)
	}
	t.Logf("filled %d donations in %s", n, time.Since(start).Round(time.Second))
	start = time.Now()
	exec(migrateHistory)
	exec(migrateTotals)
	// Long settled, as a database that has run for a while: vacuumed and
	// analysed, its pages written out, so that the migration pays for
	// none of the fill.
	exec(`VACUUM (ANALYZE) donations, donation_history`)
	if _, err := conn.Exec(ctx, `CHECKPOINT`); err != nil {
		t.Logf("CHECKPOINT refused (%v): the migration may pay for writing out the fill", err)
	}
	t.Logf("history, totals, vacuum and checkpoint in %s", time.Since(start).Round(time.Second))
	sizes := func(when string, tables ...string) {
		t.Helper()
		for _, table := range tables {
			var heap, idx, total, rows int64
			if err := conn.QueryRow(ctx, `SELECT pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid),
				(SELECT count(*) FROM `+pgx.Identifier{table}.Sanitize()+`) FROM pg_class c WHERE c.oid = $1::regclass`, table).
				Scan(&heap, &idx, &total, &rows); err != nil {
				t.Fatal(err)
			}
			mib := func(b int64) float64 { return float64(b) / (1 << 20) }
			t.Logf("%s: %-16s %9d rows, table %7.1f MiB, indexes %7.1f MiB, in all %7.1f MiB",
				when, table, rows, mib(heap), mib(idx), mib(total))
		}
	}
	prints := func(table string) map[string]statePrint {
		t.Helper()
		rows, err := conn.Query(ctx, fmt.Sprintf(migratePrint, pgx.Identifier{table}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]statePrint{}
		for rows.Next() {
			var s string
			var p statePrint
			if err := rows.Scan(&s, &p.count, &p.sum); err != nil {
				t.Fatal(err)
			}
			out[s] = p
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	sizes("schema 3", "donations", "donation_history")
	before := prints("donations")
	var total int64
	for _, s := range slices.Sorted(maps.Keys(before)) {
		t.Logf("schema 3: %-16s %8d donations", s, before[s].count)
		total += before[s].count
	}
	if total != n || len(before) != 6 {
		t.Fatalf("filled %d donations in %d states, want %d in 6", total, len(before), n)
	}
	if os.Getenv(migrateStepsEnv) == "1" {
		timeSteps(t, conn, ms[3])
	}
	var walBefore string
	if err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&walBefore); err != nil {
		t.Fatal(err)
	}

	// The migration, as a node starting on the new release runs it.
	// Its sessions are named, so that the CPU time their server
	// processes spent can be read when the server runs on this machine:
	// a figure that depends less than the wall clock on what else runs.
	app := "floodgate-migrate-" + schema
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	start = time.Now()
	s, err := postgres.Open(ctx, postgres.Options{URL: u.String(), MaxConns: 4, Schema: schema})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Open of a version-3 schema of %d donations: %v", n, err)
	}
	defer s.Close()
	cpu := backendCPU(t, conn, app)
	var wal int64
	if err := conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`, walBefore).Scan(&wal); err != nil {
		t.Fatal(err)
	}
	t.Logf("migration to schema 4 of %d donations: Open took %s (%.2f s per million donations), of which the server spent %s of CPU; %.0f MiB of WAL (the server's, other sessions included)",
		n, took.Round(10*time.Millisecond), took.Seconds()*1e6/float64(n), cpu, float64(wal)/(1<<20))
	if v := count(t, s, `SELECT max(version) FROM schema_migrations`); v != 4 {
		t.Fatalf("schema version after Open = %d, want 4", v)
	}
	sizes("schema 4", "donations", "payment_orders", "order_history")

	// Every donation has its order, in the state it stood in, with every
	// value it held.
	after := prints("payment_orders")
	for _, st := range slices.Sorted(maps.Keys(before)) {
		a, b := after[st], before[st]
		t.Logf("schema 4: %-16s %8d orders (%d donations before)", st, a.count, b.count)
		if a != b {
			t.Errorf("%s: orders %+v after the migration, donations %+v before", st, a, b)
		}
	}
	if len(after) != len(before) {
		t.Errorf("orders in states %v, donations in %v", after, before)
	}
	if k := count(t, s, `SELECT count(*) FROM payment_orders o JOIN donations d USING (seq) WHERE o.kind = 'donation' AND o.format = 0 AND o.token = 0`); k != n {
		t.Errorf("%d orders of the donation kind in the old format are their donations', want %d", k, n)
	}
	// And the store reads them as the line it is.
	b, err := s.Backlog(ctx)
	if err != nil || b.Waiting != before[string(floodgate.StatusAccepted)].count {
		t.Errorf("Backlog after the migration = %+v, %v; want %d waiting", b, err, before[string(floodgate.StatusAccepted)].count)
	}
	exp, err := s.ActionExpired(ctx, time.Now(), 10)
	if err != nil || len(exp) != min(10, int(before[string(floodgate.StatusRequiresAction)].count)) {
		t.Errorf("ActionExpired after the migration = %d orders, %v", len(exp), err)
	}
	tot, err := s.Totals(ctx, "night")
	if err != nil || tot.Waiting != b.Waiting || tot.Donations != before[string(floodgate.StatusSucceeded)].count {
		t.Errorf("Totals after the migration = %+v, %v", tot, err)
	}

	if os.Getenv(migrateRewriteEnv) == "1" {
		start = time.Now()
		exec(`VACUUM FULL donations`)
		t.Logf("VACUUM FULL donations took %s", time.Since(start).Round(10*time.Millisecond))
		sizes("rewritten", "donations")
	}
}

// timeSteps runs migration m one statement at a time in a transaction,
// logs how long each took, and rolls it back. The statements of a
// migration file end with a semicolon at the end of a line.
func timeSteps(tb testing.TB, conn *pgx.Conn, m migration.Migration) {
	tb.Helper()
	ctx := context.Background()
	tx, err := conn.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var all time.Duration
	for stmt := range strings.SplitSeq(m.SQL, ";\n") {
		var code []string
		for line := range strings.SplitSeq(stmt, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
				code = append(code, l)
			}
		}
		if len(code) == 0 {
			continue
		}
		start := time.Now()
		if _, err := tx.Exec(ctx, stmt); err != nil {
			tb.Fatalf("%s: %v", code[0], err)
		}
		took := time.Since(start)
		all += took
		tb.Logf("step %8s  %.90s", took.Round(time.Millisecond), strings.Join(code, " "))
	}
	tb.Logf("steps of %s: %s in all (rolled back)", m.Name, all.Round(10*time.Millisecond))
}

// backendCPU is the CPU time (user and system) spent so far by the server
// processes of the sessions named app, read from /proc: "unknown" when
// the server is not on this machine.
func backendCPU(tb testing.TB, conn *pgx.Conn, app string) string {
	tb.Helper()
	rows, err := conn.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "unknown"
		}
		// The fields after the command's name, which ends with the last
		// ")": utime and stime are the 14th and 15th of the line.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		for _, s := range f[11:13] {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return "unknown"
			}
			ticks += v
		}
	}
	if len(pids) == 0 {
		return "unknown"
	}
	// Linux counts them in USER_HZ, 100 a second.
	return (time.Duration(ticks) * 10 * time.Millisecond).String()
}
