package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/migration"
	"github.com/floodgate/floodgate/internal/storetest"
)

// TestUpgradeFromVersion3 migrates a file written before payment orders,
// holding a gift in every state, and holds the store and a dispatcher to
// carrying on (storetest.RunUpgrade).
func TestUpgradeFromVersion3(t *testing.T) {
	storetest.RunUpgrade(t, func(tb testing.TB, clock floodgate.Clock, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) floodgate.Store {
		path := filepath.Join(tb.TempDir(), "v3.db")
		writeVersion3(tb, path, c, tot, ds)
		s, err := Open(context.Background(), Options{Path: path, Clock: clock})
		if err != nil {
			tb.Fatalf("Open of a version-3 file: %v", err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		var v int
		if err := s.w.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != 4 {
			tb.Fatalf("schema version after Open = %d, %v; want 4", v, err)
		}
		return s
	}, true)
}

// writeVersion3 makes the file at path as a release before payment orders
// left it: migrations 1 to 3, then c, its totals and ds, row for row.
func writeVersion3(tb testing.TB, path string, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) {
	tb.Helper()
	uri, err := FileURI(path, url.Values{"_pragma": {"journal_mode(WAL)", "synchronous(FULL)"}})
	if err != nil {
		tb.Fatal(err)
	}
	db, err := sql.Open("sqlite", uri)
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	ms, err := migration.Load(migrationFS, "migrations")
	if err != nil {
		tb.Fatal(err)
	}
	exec := func(query string, args ...any) {
		tb.Helper()
		if _, err := db.Exec(query, args...); err != nil {
			tb.Fatalf("%.60s: %v", query, err)
		}
	}
	for _, m := range ms[:3] {
		exec(m.SQL)
		exec(fmt.Sprintf("PRAGMA user_version = %d", m.Version))
	}
	exec(`INSERT INTO campaigns (`+campaignCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.Currency, c.Goal, c.MinAmount, c.MaxAmount, nanos(c.OpensAt), nullNanos(c.ClosesAt),
		jsonText(intsOrEmpty(c.SuggestedAmounts)), jsonText(stringsOrEmpty(c.TaxSchemes)), nanos(c.CreatedAt), nanos(c.UpdatedAt))
	exec(`INSERT INTO totals (campaign_id, raised, donations, pending, pending_count, waiting, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		c.ID, tot.Raised, tot.Donations, tot.Pending, tot.PendingCount, tot.Waiting, nanos(tot.UpdatedAt))
	for i, l := range ds {
		d := l.Donation
		d.Seq = int64(i + 1)
		exec(`INSERT INTO donations (seq, id, campaign_id, idempotency_key, key_hash, request_hash, amount, currency, email, name,
			payment_method, anonymous, message, declaration, client_addr, status, attempt, key_since, payment_intent_id,
			client_secret, next_action, failure_code, action_since, claimed_by, lease_until, created_at, updated_at, refunded, disputed)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			d.Seq, d.ID, d.CampaignID, d.IdempotencyKey, keyHash(d.CampaignID, d.IdempotencyKey), d.RequestHash, d.Amount,
			d.Currency, d.Email, d.Name, d.PaymentMethod, d.Anonymous, d.Message, declarationText(d.Declaration), d.ClientAddr,
			string(d.Status), d.Attempt, nullNanos(d.KeySince), nullString(d.PaymentIntentID), nullString(d.ClientSecret),
			nullString(string(d.NextAction)), nullString(d.FailureCode), nullNanos(d.ActionSince), nullString(d.ClaimedBy),
			nullNanos(d.LeaseUntil), nanos(d.CreatedAt), nanos(d.UpdatedAt), d.Refunded, d.Disputed)
		for n, h := range l.History {
			exec(`INSERT INTO donation_history (donation_seq, n, status, at, failure_code, note) VALUES (?, ?, ?, ?, ?, ?)`,
				d.Seq, n, string(h.Status), nanos(h.At), h.FailureCode, h.Note)
		}
	}
}
