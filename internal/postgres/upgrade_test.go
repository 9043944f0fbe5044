package postgres_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/migration"
	"github.com/floodgate/floodgate/internal/postgres"
	"github.com/floodgate/floodgate/internal/storetest"
)

// TestUpgradeFromVersion3 migrates a schema written before payment
// orders, holding a gift in every state, and holds the store and a
// dispatcher to carrying on (storetest.RunUpgrade). Leases are judged on
// the database's clock, as in production.
func TestUpgradeFromVersion3(t *testing.T) {
	storetest.RunUpgrade(t, func(tb testing.TB, clock floodgate.Clock, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) floodgate.Store {
		url, schema := testSchema(tb)
		writeVersion3(tb, url, schema, c, tot, ds)
		s, err := postgres.Open(context.Background(), postgres.Options{URL: url, MaxConns: 8, Schema: schema, Clock: clock})
		if err != nil {
			tb.Fatalf("Open of a version-3 schema: %v", err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		if n := count(tb, s, `SELECT max(version) FROM schema_migrations`); n != 4 {
			tb.Fatalf("schema version after Open = %d, want 4", n)
		}
		return s
	}, false)
}

// writeVersion3 makes schema as a release before payment orders left it:
// migrations 1 to 3, recorded, then c, its totals and ds, row for row,
// each donation's seq drawn from the identity in the order given.
func writeVersion3(tb testing.TB, url, schema string, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := execer(tb, conn)
	createVersion3(tb, conn, schema)
	exec(`INSERT INTO campaigns (id, name, currency, goal, min_amount, max_amount, opens_at, closes_at, suggested_amounts,
		tax_schemes, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		c.ID, c.Name, c.Currency, c.Goal, c.MinAmount, c.MaxAmount, c.OpensAt, c.ClosesAt, orEmpty(c.SuggestedAmounts),
		orEmpty(c.TaxSchemes), c.CreatedAt, c.UpdatedAt)
	exec(`INSERT INTO totals (campaign_id, raised, donations, pending, pending_count, waiting, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		c.ID, tot.Raised, tot.Donations, tot.Pending, tot.PendingCount, tot.Waiting, tot.UpdatedAt)
	text := func(s string) *string {
		if s == "" {
			return nil
		}
		return &s
	}
	for _, l := range ds {
		d := l.Donation
		var decl *string
		if d.Declaration != nil {
			b, _ := json.Marshal(d.Declaration)
			decl = text(string(b))
		}
		if err := conn.QueryRow(ctx, `INSERT INTO donations (id, campaign_id, idempotency_key, request_hash, amount, currency,
			email, name, payment_method, anonymous, message, declaration, client_addr, status, attempt, key_since,
			payment_intent_id, client_secret, next_action, failure_code, action_since, claimed_by, lease_until,
			created_at, updated_at, refunded, disputed)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb, $13, $14, $15, $16, $17, $18, $19::json, $20,
				$21, $22, $23, $24, $25, $26, $27)
			RETURNING seq`,
			d.ID, d.CampaignID, d.IdempotencyKey, d.RequestHash, d.Amount, d.Currency, d.Email, d.Name, d.PaymentMethod,
			d.Anonymous, d.Message, decl, d.ClientAddr, string(d.Status), d.Attempt, d.KeySince, text(d.PaymentIntentID),
			text(d.ClientSecret), text(string(d.NextAction)), text(d.FailureCode), d.ActionSince, text(d.ClaimedBy),
			d.LeaseUntil, d.CreatedAt, d.UpdatedAt, d.Refunded, d.Disputed).Scan(&d.Seq); err != nil {
			tb.Fatalf("insert a version-3 donation: %v", err)
		}
		for n, h := range l.History {
			exec(`INSERT INTO donation_history (donation_seq, n, status, at, failure_code, note) VALUES ($1, $2, $3, $4, $5, $6)`,
				d.Seq, n, string(h.Status), h.At, h.FailureCode, h.Note)
		}
	}
}

func orEmpty[T any](a []T) []T {
	if a == nil {
		return []T{}
	}
	return a
}

// execer returns a function that runs a statement on conn and fails tb if
// it fails.
func execer(tb testing.TB, conn *pgx.Conn) func(query string, args ...any) {
	return func(query string, args ...any) {
		tb.Helper()
		if _, err := conn.Exec(context.Background(), query, args...); err != nil {
			tb.Fatalf("%.60s: %v", query, err)
		}
	}
}

// createVersion3 creates schema, empty, as a release before payment
// orders made it (migrations 1 to 3, recorded), makes it conn's
// search_path and returns every migration this code knows.
func createVersion3(tb testing.TB, conn *pgx.Conn, schema string) []migration.Migration {
	tb.Helper()
	ms, err := migration.Load(os.DirFS("."), "migrations")
	if err != nil {
		tb.Fatal(err)
	}
	exec := execer(tb, conn)
	ident := pgx.Identifier{schema}.Sanitize()
	exec(`CREATE SCHEMA ` + ident)
	exec(`SET search_path TO ` + ident)
	exec(`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`)
	for _, m := range ms[:3] {
		exec(m.SQL)
		exec(`INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
	}
	return ms
}
