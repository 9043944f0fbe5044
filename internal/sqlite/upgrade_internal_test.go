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
func TestUpgradeFromVersion3(t *testing.T) { storetest.RunUpgrade(t, legacyStore(3), true) }

// TestUpgradeFromVersion4 does the same from a file a release with payment
// orders and no unknown outcomes left: the gifts of version 3 moved to
// their orders by migration 4, each order in its state, and then migrated
// to the unknown outcomes' columns.
func TestUpgradeFromVersion4(t *testing.T) { storetest.RunUpgrade(t, legacyStore(4), true) }

// legacyStore writes a file at schema version and opens it, which
// migrates it to this binary's.
func legacyStore(version int) storetest.LegacyStore {
	return func(tb testing.TB, clock floodgate.Clock, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) floodgate.Store {
		path := filepath.Join(tb.TempDir(), fmt.Sprintf("v%d.db", version))
		writeVersion(tb, path, version, c, tot, ds)
		s, err := Open(context.Background(), Options{Path: path, Clock: clock})
		if err != nil {
			tb.Fatalf("Open of a version-%d file: %v", version, err)
		}
		tb.Cleanup(func() { _ = s.Close() })
		ms, err := migration.Load(migrationFS, "migrations")
		if err != nil {
			tb.Fatal(err)
		}
		var v int
		if err := s.w.QueryRow(`PRAGMA user_version`).Scan(&v); err != nil || v != len(ms) {
			tb.Fatalf("schema version after Open = %d, %v; want %d", v, err, len(ms))
		}
		return s
	}
}

// writeVersion makes the file at path as a release at schema version (3
// or later) left it: migrations 1 to 3, then c, its totals and ds, row for
// row, as a release before payment orders wrote them, then the migrations
// after 3 up to version.
func writeVersion(tb testing.TB, path string, version int, c *floodgate.Campaign, tot floodgate.Totals, ds []storetest.LegacyDonation) {
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
	for _, m := range ms[3:version] {
		exec(m.SQL)
		exec(fmt.Sprintf("PRAGMA user_version = %d", m.Version))
	}
}
