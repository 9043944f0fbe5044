package sqlite

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/migration"
	"github.com/floodgate/floodgate/internal/writable"
)

var _ floodgate.Store = (*Store)(nil)

// Options configure a Store.
type Options struct {
	// Path is the database file; its directory must exist.
	Path string
	// ReadConns bounds the read-only connection pool.
	ReadConns int
	// Clock stamps accepted donations; the system clock when nil.
	Clock floodgate.Clock
}

// Store is floodgate.Store on one SQLite file.
type Store struct {
	path  string
	w     *sql.DB // exactly one connection: every write is serialised here
	r     *sql.DB // read-only pool
	lock  *os.File
	clock floodgate.Clock

	insHistory *sql.Stmt
	updTotals  *sql.Stmt

	// accept is the state of the accept path; see accept.go.
	accept acceptState
}

// Open opens (creating if needed) the database at opts.Path, takes the
// process lock, applies migrations and prepares the hot statements.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.ReadConns <= 0 {
		opts.ReadConns = 4
	}
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	writer, err := FileURI(opts.Path, url.Values{
		"_pragma": {"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"},
		"_txlock": {"immediate"},
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite %s: %w", opts.Path, err)
	}
	reader, _ := FileURI(opts.Path, url.Values{"_pragma": {"busy_timeout(10000)", "query_only(1)"}})
	lock, err := lockFile(opts.Path + ".lock")
	if err != nil {
		return nil, err
	}
	s := &Store{path: opts.Path, lock: lock, clock: opts.Clock}
	fail := func(err error) (*Store, error) {
		_ = s.Close()
		return nil, err
	}
	if err := privateFiles(opts.Path); err != nil {
		return fail(fmt.Errorf("sqlite %s: %w", opts.Path, err))
	}
	if s.w, err = sql.Open("sqlite", writer); err != nil {
		return fail(err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, s.w); err != nil {
		return fail(fmt.Errorf("sqlite %s: %w", opts.Path, err))
	}

	if s.r, err = sql.Open("sqlite", reader); err != nil {
		return fail(err)
	}
	s.r.SetMaxOpenConns(opts.ReadConns)
	s.r.SetMaxIdleConns(opts.ReadConns)

	prep := func(dst **sql.Stmt, query string) error {
		st, err := s.w.PrepareContext(ctx, query)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", query, err)
		}
		*dst = st
		return nil
	}
	if err := errors.Join(
		prep(&s.insHistory, `INSERT INTO donation_history (donation_seq, n, status, at, failure_code, note)
			VALUES (?, (SELECT COALESCE(MAX(n), -1) + 1 FROM donation_history WHERE donation_seq = ?), ?, ?, ?, ?)`),
		prep(&s.updTotals, `UPDATE totals SET raised = raised + ?, donations = donations + ?,
			pending = pending + ?, pending_count = pending_count + ?, waiting = waiting + ?, updated_at = ?
			WHERE campaign_id = ?`),
	); err != nil {
		return fail(err)
	}
	if err := s.openAccept(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// OpenReader opens the database at path for reading only, beside the
// process that writes it (WAL lets readers run while it commits): no
// process lock, no writer, no migration. Only the methods that read
// (Campaign, Campaigns, Totals, Donation, History, Backlog and the Reports)
// may be called; the schema must be this binary's.
func OpenReader(ctx context.Context, path string, conns int) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	uri, err := FileURI(path, url.Values{"_pragma": {"busy_timeout(10000)", "query_only(1)"}})
	if err != nil {
		return nil, err
	}
	r, err := sql.Open("sqlite", uri)
	if err != nil {
		return nil, err
	}
	r.SetMaxOpenConns(max(conns, 1))
	ms, err := migration.Load(migrationFS, "migrations")
	if err != nil {
		_ = r.Close()
		return nil, err
	}
	var have int
	if err := r.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		_ = r.Close()
		return nil, err
	}
	if have != len(ms) {
		_ = r.Close()
		return nil, fmt.Errorf("sqlite %s: schema version %d, this binary reads %d (start floodgate serve once to migrate it)", path, have, len(ms))
	}
	return &Store{path: path, r: r, clock: floodgate.SystemClock{}}, nil
}

// DefaultPath is where the store lives in a data directory.
func DefaultPath(dataDir string) string { return filepath.Join(dataDir, "floodgate.db") }

// Close closes both pools and releases the process lock.
func (s *Store) Close() error {
	var errs []error
	for _, st := range []*sql.Stmt{s.insHistory, s.updTotals, s.accept.insChunk, s.accept.insOne, s.accept.histChunk, s.accept.histOne} {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.lock != nil {
		errs = append(errs, unlockFile(s.lock))
		s.lock = nil
	}
	return errors.Join(errs...)
}

// Ping checks that both pools answer, that the file system holding the
// database has room for a batch, and that a small write commits: a full
// disk fails every accept while reads still work.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.r.PingContext(ctx); err != nil {
		return err
	}
	if s.w == nil {
		return errors.New("store opened for reading only")
	}
	if err := writable.Room(filepath.Dir(s.path), minRoom); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES ('probe:writable', randomblob(16))
		ON CONFLICT (name) DO UPDATE SET value = excluded.value`)
	if err != nil {
		return fmt.Errorf("the store takes no writes: %w", err)
	}
	return nil
}

// Writer returns the writer pool (one connection), for tests that must
// read a pragma on it or make it fail on purpose.
func (s *Store) Writer() *sql.DB { return s.w }

// --- time and null helpers ---

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullNanos(t *time.Time) sql.NullInt64 {
	if t == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func timePtr(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromNanos(n.Int64)
	return &t
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// --- campaigns ---

const campaignCols = `id, name, currency, goal, min_amount, max_amount, opens_at, closes_at,
	suggested_amounts, tax_schemes, created_at, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanCampaign(sc scanner) (*floodgate.Campaign, error) {
	var (
		c              floodgate.Campaign
		opens          int64
		closes         sql.NullInt64
		sugg, schemes  string
		created, updAt int64
	)
	if err := sc.Scan(&c.ID, &c.Name, &c.Currency, &c.Goal, &c.MinAmount, &c.MaxAmount,
		&opens, &closes, &sugg, &schemes, &created, &updAt); err != nil {
		return nil, err
	}
	c.OpensAt, c.ClosesAt = fromNanos(opens), timePtr(closes)
	c.CreatedAt, c.UpdatedAt = fromNanos(created), fromNanos(updAt)
	if err := json.Unmarshal([]byte(sugg), &c.SuggestedAmounts); err != nil {
		return nil, fmt.Errorf("campaign %s suggested_amounts: %w", c.ID, err)
	}
	if err := json.Unmarshal([]byte(schemes), &c.TaxSchemes); err != nil {
		return nil, fmt.Errorf("campaign %s tax_schemes: %w", c.ID, err)
	}
	return &c, nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v) // slices of ints and strings always marshal
	return string(b)
}

func intsOrEmpty(a []int64) []int64 {
	if a == nil {
		return []int64{}
	}
	return a
}

func stringsOrEmpty(a []string) []string {
	if a == nil {
		return []string{}
	}
	return a
}

// CreateCampaign implements floodgate.Store.
func (s *Store) CreateCampaign(ctx context.Context, c *floodgate.Campaign) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var one int
	switch err := tx.QueryRowContext(ctx, `SELECT 1 FROM campaigns WHERE id = ?`, c.ID).Scan(&one); {
	case err == nil:
		return floodgate.Errorf(floodgate.ECONFLICT, "Campaign %q already exists.", c.ID)
	case !errors.Is(err, sql.ErrNoRows):
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO campaigns (`+campaignCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.Currency, c.Goal, c.MinAmount, c.MaxAmount, nanos(c.OpensAt), nullNanos(c.ClosesAt),
		jsonText(intsOrEmpty(c.SuggestedAmounts)), jsonText(stringsOrEmpty(c.TaxSchemes)), nanos(c.CreatedAt), nanos(c.UpdatedAt)); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO totals (campaign_id, updated_at) VALUES (?, ?)`, c.ID, nanos(c.CreatedAt)); err != nil {
		return err
	}
	return tx.Commit()
}

// UpdateCampaign implements floodgate.Store.
func (s *Store) UpdateCampaign(ctx context.Context, id string, u floodgate.CampaignUpdate, now time.Time) (*floodgate.Campaign, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	c, err := scanCampaign(tx.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
	} else if err != nil {
		return nil, err
	}
	next, err := u.Apply(*c, now)
	if err != nil {
		return nil, err
	}
	next.UpdatedAt = now
	if err := next.Validate(); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE campaigns SET name = ?, goal = ?, closes_at = ?, suggested_amounts = ?, updated_at = ? WHERE id = ?`,
		next.Name, next.Goal, nullNanos(next.ClosesAt), jsonText(intsOrEmpty(next.SuggestedAmounts)), nanos(now), id); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return &next, nil
}

// Campaign implements floodgate.Store.
func (s *Store) Campaign(ctx context.Context, id string) (*floodgate.Campaign, error) {
	c, err := scanCampaign(s.r.QueryRowContext(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
	}
	return c, err
}

// Campaigns implements floodgate.Store.
func (s *Store) Campaigns(ctx context.Context) ([]*floodgate.Campaign, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+campaignCols+` FROM campaigns ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*floodgate.Campaign
	for rows.Next() {
		c, err := scanCampaign(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// Totals implements floodgate.Store.
func (s *Store) Totals(ctx context.Context, campaignID string) (*floodgate.Totals, error) {
	var (
		t  floodgate.Totals
		at int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT t.campaign_id, c.currency, t.raised, t.donations, t.pending,
		t.pending_count, t.waiting, t.updated_at FROM totals t JOIN campaigns c ON c.id = t.campaign_id
		WHERE t.campaign_id = ?`, campaignID).
		Scan(&t.Campaign, &t.Currency, &t.Raised, &t.Donations, &t.Pending, &t.PendingCount, &t.Waiting, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", campaignID)
	} else if err != nil {
		return nil, err
	}
	t.UpdatedAt = fromNanos(at)
	return &t, nil
}

// applyTotals adds each campaign's delta inside tx.
func (s *Store) applyTotals(ctx context.Context, tx *sql.Tx, deltas map[string]floodgate.TotalsDelta, now time.Time) error {
	if len(deltas) == 0 {
		return nil
	}
	st := tx.StmtContext(ctx, s.updTotals)
	for id, d := range deltas {
		if d.Zero() {
			continue
		}
		if _, err := st.ExecContext(ctx, d.Raised, d.Donations, d.Pending, d.PendingCount, d.Waiting, nanos(now), id); err != nil {
			return err
		}
	}
	return nil
}

// --- donations ---

const donationCols = `seq, id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, status, attempt, key_since,
	payment_intent_id, client_secret, next_action, failure_code, action_since, claimed_by, lease_until,
	created_at, updated_at, refunded, disputed`

func scanDonation(sc scanner) (*floodgate.Donation, error) {
	var (
		d                                 floodgate.Donation
		decl, pi, secret, next, fail, by  sql.NullString
		keySince, actionSince, leaseUntil sql.NullInt64
		created, updated                  int64
		status                            string
	)
	if err := sc.Scan(&d.Seq, &d.ID, &d.CampaignID, &d.IdempotencyKey, &d.RequestHash, &d.Amount, &d.Currency,
		&d.Email, &d.Name, &d.PaymentMethod, &d.Anonymous, &d.Message, &decl, &d.ClientAddr, &status,
		&d.Attempt, &keySince, &pi, &secret, &next, &fail, &actionSince, &by, &leaseUntil,
		&created, &updated, &d.Refunded, &d.Disputed); err != nil {
		return nil, err
	}
	d.Status = floodgate.DonationStatus(status)
	if decl.Valid {
		d.Declaration = new(floodgate.Declaration)
		if err := json.Unmarshal([]byte(decl.String), d.Declaration); err != nil {
			return nil, fmt.Errorf("donation %s declaration: %w", d.ID, err)
		}
	}
	d.KeySince, d.ActionSince, d.LeaseUntil = timePtr(keySince), timePtr(actionSince), timePtr(leaseUntil)
	d.PaymentIntentID, d.ClientSecret, d.FailureCode, d.ClaimedBy = pi.String, secret.String, fail.String, by.String
	if next.Valid {
		d.NextAction = json.RawMessage(next.String)
	}
	d.CreatedAt, d.UpdatedAt = fromNanos(created), fromNanos(updated)
	return &d, nil
}

func declarationText(d *floodgate.Declaration) sql.NullString {
	if d == nil {
		return sql.NullString{}
	}
	b, _ := json.Marshal(d) // a struct of strings always marshals
	return sql.NullString{String: string(b), Valid: true}
}

// Donation implements floodgate.Store.
func (s *Store) Donation(ctx context.Context, id string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.r.QueryRowContext(ctx, `SELECT `+donationCols+` FROM donations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
	}
	return d, err
}

// DonationByPaymentIntent implements floodgate.Store.
func (s *Store) DonationByPaymentIntent(ctx context.Context, paymentIntentID string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.r.QueryRowContext(ctx, `SELECT `+donationCols+` FROM donations WHERE payment_intent_id = ?`, paymentIntentID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No donation has PaymentIntent %q.", paymentIntentID)
	}
	return d, err
}

// History implements floodgate.Store.
func (s *Store) History(ctx context.Context, id string) ([]floodgate.StatusChange, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT h.status, h.at, h.failure_code, h.note FROM donation_history h
		JOIN donations d ON d.seq = h.donation_seq WHERE d.id = ? ORDER BY h.n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []floodgate.StatusChange
	for rows.Next() {
		var (
			c      floodgate.StatusChange
			status string
			at     int64
		)
		if err := rows.Scan(&status, &at, &c.FailureCode, &c.Note); err != nil {
			return nil, err
		}
		c.Status, c.At = floodgate.DonationStatus(status), fromNanos(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		if _, err := s.Donation(ctx, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CancelDonation implements floodgate.Store.
func (s *Store) CancelDonation(ctx context.Context, id string, now time.Time) (*floodgate.Donation, error) {
	if now.IsZero() {
		now = s.clock.Now()
	}
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyCancel(d, now)
	})
}

// ReplacePaymentMethod implements floodgate.Store.
func (s *Store) ReplacePaymentMethod(ctx context.Context, id, pm string, now time.Time) (*floodgate.Donation, error) {
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyPaymentMethod(d, pm, now)
	})
}

// NewKeyGeneration implements floodgate.Store.
func (s *Store) NewKeyGeneration(ctx context.Context, owner, id string, from int, paymentIntentID string, now time.Time) (*floodgate.Donation, error) {
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyNewKeyGeneration(d, owner, from, paymentIntentID, now)
	})
}

// Settle implements floodgate.Store.
func (s *Store) Settle(ctx context.Context, st floodgate.Settlement) (*floodgate.Donation, error) {
	if st.At.IsZero() {
		st.At = s.clock.Now()
	}
	return s.move(ctx, st.DonationID, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplySettlement(d, st)
	})
}

// Reverse implements floodgate.Store.
func (s *Store) Reverse(ctx context.Context, id string, kind floodgate.Reversal, total int64, at time.Time) (*floodgate.Donation, error) {
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyReversal(d, kind, total, at)
	})
}

// move reads a donation in a write transaction (BEGIN IMMEDIATE: no other
// writer until it commits), asks decide what the change writes, writes
// the Transition and returns the donation as it now is. An error from
// decide comes back with the unchanged donation.
func (s *Store) move(ctx context.Context, id string, decide func(*floodgate.Donation) (floodgate.Transition, error)) (*floodgate.Donation, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	d, err := scanDonation(tx.QueryRowContext(ctx, `SELECT `+donationCols+` FROM donations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
	} else if err != nil {
		return nil, err
	}
	t, err := decide(d)
	if err != nil {
		return d, err
	}
	if err := s.write(ctx, tx, d, t); err != nil {
		return nil, err
	}
	nd, err := scanDonation(tx.QueryRowContext(ctx, `SELECT `+donationCols+` FROM donations WHERE seq = ?`, d.Seq))
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return nd, nil
}

// write applies t, decided on d, inside tx: one UPDATE of the fields it
// changes, its history line and its totals delta. Every state change is
// written by this one function.
func (s *Store) write(ctx context.Context, tx *sql.Tx, d *floodgate.Donation, t floodgate.Transition) error {
	if len(t.Changed) > 0 {
		set := make([]string, len(t.Changed))
		args := make([]any, 0, len(t.Changed)+1)
		for i, f := range t.Changed {
			col, v, err := column(f, t.Donation)
			if err != nil {
				return err
			}
			set[i] = col + " = ?"
			args = append(args, v)
		}
		args = append(args, d.Seq)
		if _, err := tx.ExecContext(ctx, `UPDATE donations SET `+strings.Join(set, ", ")+` WHERE seq = ?`, args...); err != nil {
			return err
		}
	}
	if h := t.History; h != nil {
		if _, err := tx.StmtContext(ctx, s.insHistory).ExecContext(ctx, d.Seq, d.Seq, string(h.Status), nanos(h.At), h.FailureCode, h.Note); err != nil {
			return err
		}
	}
	return s.applyTotals(ctx, tx, map[string]floodgate.TotalsDelta{d.CampaignID: t.Delta}, t.At)
}

// column returns the column that holds field f and its value in d, as
// this engine stores it.
func column(f floodgate.DonationField, d *floodgate.Donation) (string, any, error) {
	switch f {
	case floodgate.FieldStatus:
		return "status", string(d.Status), nil
	case floodgate.FieldPaymentMethod:
		return "payment_method", d.PaymentMethod, nil
	case floodgate.FieldAttempt:
		return "attempt", d.Attempt, nil
	case floodgate.FieldKeySince:
		return "key_since", nullNanos(d.KeySince), nil
	case floodgate.FieldPaymentIntentID:
		return "payment_intent_id", nullString(d.PaymentIntentID), nil
	case floodgate.FieldClientSecret:
		return "client_secret", nullString(d.ClientSecret), nil
	case floodgate.FieldNextAction:
		return "next_action", nullString(string(d.NextAction)), nil
	case floodgate.FieldFailureCode:
		return "failure_code", nullString(d.FailureCode), nil
	case floodgate.FieldActionSince:
		return "action_since", nullNanos(d.ActionSince), nil
	case floodgate.FieldClaimedBy:
		return "claimed_by", nullString(d.ClaimedBy), nil
	case floodgate.FieldLeaseUntil:
		return "lease_until", nullNanos(d.LeaseUntil), nil
	case floodgate.FieldRefunded:
		return "refunded", d.Refunded, nil
	case floodgate.FieldDisputed:
		return "disputed", d.Disputed, nil
	case floodgate.FieldUpdatedAt:
		return "updated_at", nanos(d.UpdatedAt), nil
	}
	return "", nil, fmt.Errorf("sqlite: no column holds donation field %s", f)
}

// Backlog implements floodgate.Store with two index look-ups.
func (s *Store) Backlog(ctx context.Context) (floodgate.Backlog, error) {
	var (
		b       floodgate.Backlog
		created sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT seq, created_at FROM donations WHERE status = 'accepted' ORDER BY seq LIMIT 1`).
		Scan(&b.HeadSeq, &created)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return b, err
	}
	if created.Valid {
		b.Oldest = fromNanos(created.Int64)
	}
	if err := s.r.QueryRowContext(ctx, `SELECT COALESCE(SUM(waiting), 0) FROM totals`).Scan(&b.Waiting); err != nil {
		return b, err
	}
	return b, nil
}

// ClaimDonations implements floodgate.Store.
func (s *Store) ClaimDonations(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]*floodgate.Donation, error) {
	if n <= 0 {
		return nil, nil
	}
	until := nanos(now.Add(lease))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()

	// Gifts whose dispatcher died resume first, with their key unchanged.
	orphans, err := queryDonations(ctx, tx, `UPDATE donations SET claimed_by = ?, lease_until = ?
		WHERE seq IN (SELECT seq FROM donations WHERE status = 'processing' AND lease_until < ? ORDER BY lease_until, seq LIMIT ?)
		RETURNING `+donationCols, owner, until, nanos(now), n)
	if err != nil {
		return nil, err
	}
	fresh, err := queryDonations(ctx, tx, `UPDATE donations SET status = 'processing', claimed_by = ?, lease_until = ?,
		key_since = COALESCE(key_since, ?), updated_at = ?
		WHERE seq IN (SELECT seq FROM donations WHERE status = 'accepted' ORDER BY seq LIMIT ?)
		RETURNING `+donationCols, owner, until, nanos(now), nanos(now), n-len(orphans))
	if err != nil {
		return nil, err
	}
	hist := tx.StmtContext(ctx, s.insHistory)
	deltas := map[string]floodgate.TotalsDelta{}
	for _, d := range fresh {
		if _, err := hist.ExecContext(ctx, d.Seq, d.Seq, string(floodgate.StatusProcessing), nanos(now), "", ""); err != nil {
			return nil, err
		}
		delta := deltas[d.CampaignID]
		delta.Add(floodgate.Delta(floodgate.StatusAccepted, floodgate.StatusProcessing, d.Amount))
		deltas[d.CampaignID] = delta
	}
	if err := s.applyTotals(ctx, tx, deltas, now); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	out := append(orphans, fresh...)
	slices.SortFunc(out, func(a, b *floodgate.Donation) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

func queryDonations(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, query string, args ...any) ([]*floodgate.Donation, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*floodgate.Donation
	for rows.Next() {
		d, err := scanDonation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ExtendLeases implements floodgate.Store.
func (s *Store) ExtendLeases(ctx context.Context, owner string, until time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE donations SET lease_until = ? WHERE status = 'processing' AND claimed_by = ?`,
		nanos(until), owner)
	return err
}

// ReleaseLeases implements floodgate.Store.
func (s *Store) ReleaseLeases(ctx context.Context, owner string) error {
	_, err := s.w.ExecContext(ctx, `UPDATE donations SET lease_until = 0 WHERE status = 'processing' AND (? = '' OR claimed_by = ?)`,
		owner, owner)
	return err
}

// ActionExpired implements floodgate.Store.
func (s *Store) ActionExpired(ctx context.Context, before time.Time, n int) ([]*floodgate.Donation, error) {
	return queryDonations(ctx, s.r, `SELECT `+donationCols+` FROM donations
		WHERE status = 'requires_action' AND action_since < ? ORDER BY action_since LIMIT ?`, nanos(before), n)
}

// Secret implements floodgate.Store.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, "secret:"+name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, err
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	if _, err := s.w.ExecContext(ctx, `INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
		"secret:"+name, fresh); err != nil {
		return nil, err
	}
	err = s.w.QueryRowContext(ctx, `SELECT value FROM meta WHERE name = ?`, "secret:"+name).Scan(&v)
	return v, err
}

// Defer implements floodgate.Store.
func (s *Store) Defer(ctx context.Context, owner, id string, until time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE donations SET claimed_by = NULL, lease_until = ? WHERE id = ? AND status = 'processing' AND claimed_by = ?`,
		nanos(until), id, owner)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return floodgate.Errorf(floodgate.ESTATE, "Donation %q is not processing under this claim.", id)
	}
	return nil
}
