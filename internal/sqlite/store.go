package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
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
	// Clock stamps accepted donations and is the database's clock, by
	// which leases are granted and judged (the process that opens the
	// file is its only one); the system clock when nil.
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
		prep(&s.insHistory, `INSERT INTO order_history (order_seq, n, status, at, failure_code, note)
			VALUES (?, (SELECT COALESCE(MAX(n), 0) + 1 FROM order_history WHERE order_seq = ?), ?, ?, ?, ?)`),
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
	a := &s.accept
	for _, st := range []*sql.Stmt{s.insHistory, s.updTotals, a.insChunk, a.insOne, a.insOrders} {
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

// donationCols reads a donation, d, with its order's state (orderCols):
// what the donor gave, then what the payment made of it.
const donationCols = `d.seq, d.id, d.campaign_id, d.idempotency_key, d.request_hash, d.amount, d.currency, d.email, d.name,
	d.anonymous, d.message, d.declaration, d.created_at, ` + orderCols

// donationFrom joins a donation to its order, which shares its seq.
const donationFrom = orderFrom

func scanDonation(sc scanner) (*floodgate.Donation, error) {
	var (
		d       floodgate.Donation
		decl    sql.NullString
		created int64
		o       orderRow
	)
	dest := append([]any{&d.Seq, &d.ID, &d.CampaignID, &d.IdempotencyKey, &d.RequestHash, &d.Amount, &d.Currency,
		&d.Email, &d.Name, &d.Anonymous, &d.Message, &decl, &created}, o.dest()...)
	if err := sc.Scan(dest...); err != nil {
		return nil, err
	}
	if decl.Valid {
		d.Declaration = new(floodgate.Declaration)
		if err := json.Unmarshal([]byte(decl.String), d.Declaration); err != nil {
			return nil, fmt.Errorf("donation %s declaration: %w", d.ID, err)
		}
	}
	d.CreatedAt = fromNanos(created)
	d.ShowOrder(o.order())
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
	d, err := scanDonation(s.r.QueryRowContext(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
	}
	return d, err
}

// historyOf reads the history of the order of the donation with id ?1,
// oldest first. Its first line, the acceptance (line 0), is the order's
// creation: an order accepted since payment orders keeps no row for it,
// and it is read from the donation; one accepted before them kept that
// row, and it is read as it was. Every later line is numbered after it.
const historyOf = `SELECT h.n, h.status, h.at, h.failure_code, h.note FROM donations d
		JOIN order_history h ON h.order_seq = d.seq WHERE d.id = ?1
	UNION ALL
	SELECT 0, 'accepted', d.created_at, '', '' FROM donations d WHERE d.id = ?1
		AND NOT EXISTS (SELECT 1 FROM order_history h WHERE h.order_seq = d.seq AND h.n = 0)
	ORDER BY 1`

// History implements floodgate.Store: no line means no donation, since
// every order's history has its acceptance.
func (s *Store) History(ctx context.Context, id string) ([]floodgate.StatusChange, error) {
	rows, err := s.r.QueryContext(ctx, historyOf, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []floodgate.StatusChange
	for rows.Next() {
		var (
			c      floodgate.StatusChange
			n      int
			status string
			at     int64
		)
		if err := rows.Scan(&n, &status, &at, &c.FailureCode, &c.Note); err != nil {
			return nil, err
		}
		c.Status, c.At = floodgate.DonationStatus(status), fromNanos(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
	}
	return out, nil
}

// CancelDonation implements floodgate.Store.
func (s *Store) CancelDonation(ctx context.Context, id string, now time.Time) (*floodgate.Donation, error) {
	if now.IsZero() {
		now = s.clock.Now()
	}
	return s.moveDonation(ctx, id, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyCancel(o, now)
	})
}

// ReplacePaymentMethod implements floodgate.Store.
func (s *Store) ReplacePaymentMethod(ctx context.Context, id, pm string, now time.Time) (*floodgate.Donation, error) {
	return s.moveDonation(ctx, id, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyPaymentMethod(o, pm, now)
	})
}

// moveDonation is move on a donation's order, found by the donation's
// id; it returns the donation as it now is.
func (s *Store) moveDonation(ctx context.Context, id string, decide decision) (*floodgate.Donation, error) {
	var out *floodgate.Donation
	_, err := s.move(ctx, `d.id = ?`, id, decide, func(tx *sql.Tx, seq int64) (err error) {
		out, err = scanDonation(tx.QueryRowContext(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.seq = ?`, seq))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
	}
	return out, err
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
