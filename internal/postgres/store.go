package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate"
)

var _ floodgate.Store = (*Store)(nil)

// Options configure a Store.
type Options struct {
	// URL is a PostgreSQL connection URL or keyword/value string, as pgx
	// parses it. A synchronous_commit given in it is kept; otherwise every
	// session runs with synchronous_commit=on, so that a commit is durable
	// before Accept returns.
	URL string
	// MaxConns bounds the connection pool; pgxpool's default when 0.
	MaxConns int
	// Schema, when not empty, holds floodgate's tables: it is created if
	// missing and is every connection's search_path.
	Schema string
	// Clock stamps accepted donations; the system clock when nil.
	Clock floodgate.Clock
}

// Store is floodgate.Store on PostgreSQL, shared by any number of nodes.
type Store struct {
	pool  *pgxpool.Pool
	clock floodgate.Clock
	// known holds ids of campaigns seen to exist. Campaigns are never
	// deleted, so the accept path asks the database only about new ones.
	known sync.Map
}

// Open connects to opts.URL, creates opts.Schema if needed and applies the
// migrations under an advisory lock, so that nodes starting together
// migrate once.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = int32(min(opts.MaxConns, 1<<20))
	}
	params := cfg.ConnConfig.RuntimeParams
	if opts.Schema != "" {
		params["search_path"] = pgx.Identifier{opts.Schema}.Sanitize()
	}
	if _, ok := params["synchronous_commit"]; !ok {
		params["synchronous_commit"] = "on"
	}
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		// Times come back in UTC, as every other store returns them.
		c.TypeMap().RegisterType(&pgtype.Type{Name: "timestamptz", OID: pgtype.TimestamptzOID,
			Codec: &pgtype.TimestamptzCodec{ScanLocation: time.UTC}})
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	where := fmt.Sprintf("postgres %s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if err := migrate(ctx, pool, opts.Schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &Store{pool: pool, clock: opts.Clock}, nil
}

// Close closes the pool; it may be called more than once.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping checks that the database answers and takes writes: a server in
// recovery, a read-only session or a full disk fails the probe, a row
// written and rolled back, so nothing stays behind and no row is shared
// between nodes.
func (s *Store) Ping(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `INSERT INTO meta (name, value) VALUES ('probe:' || gen_random_uuid(), '\x00')`); err != nil {
		return fmt.Errorf("the store takes no writes: %w", err)
	}
	return nil
}

// Pool returns the connection pool, for tests that look at the tables.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// --- transactions, times and nulls ---

// maxAttempts bounds how often a transaction that lost a deadlock or a
// serialisation check is run again. Two accept batches that hold the same
// two new keys in opposite orders each wait on the other's unique-index
// entry; PostgreSQL aborts one, and running it again is safe because
// nothing of it was kept.
const maxAttempts = 5

// inTx runs fn in a READ COMMITTED transaction and commits it, running it
// again after a deadlock or serialisation failure. fn must not keep state
// between calls.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, fn)
		if err == nil || attempt == maxAttempts || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// now reads the clock at the database's precision, so that what a method
// returns equals what a later read finds.
func (s *Store) now() time.Time { return micro(s.clock.Now()) }

func micro(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// --- campaigns ---

const campaignCols = `id, name, currency, goal, min_amount, max_amount, opens_at, closes_at,
	suggested_amounts, tax_schemes, created_at, updated_at`

func scanCampaign(row pgx.Row) (*floodgate.Campaign, error) {
	var c floodgate.Campaign
	if err := row.Scan(&c.ID, &c.Name, &c.Currency, &c.Goal, &c.MinAmount, &c.MaxAmount, &c.OpensAt, &c.ClosesAt,
		&c.SuggestedAmounts, &c.TaxSchemes, &c.CreatedAt, &c.UpdatedAt); err != nil {
		return nil, err
	}
	return &c, nil
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

func campaignNotFound(id string) error {
	return floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
}

// CreateCampaign implements floodgate.Store: the campaign and its zero
// totals are one statement.
func (s *Store) CreateCampaign(ctx context.Context, c *floodgate.Campaign) error {
	tag, err := s.pool.Exec(ctx, `WITH c AS (
			INSERT INTO campaigns (`+campaignCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (id) DO NOTHING
			RETURNING id, created_at)
		INSERT INTO totals (campaign_id, updated_at) SELECT id, created_at FROM c`,
		c.ID, c.Name, c.Currency, c.Goal, c.MinAmount, c.MaxAmount, c.OpensAt, c.ClosesAt,
		intsOrEmpty(c.SuggestedAmounts), stringsOrEmpty(c.TaxSchemes), c.CreatedAt, c.UpdatedAt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return floodgate.Errorf(floodgate.ECONFLICT, "Campaign %q already exists.", c.ID)
	}
	s.known.Store(c.ID, struct{}{})
	return nil
}

// UpdateCampaign implements floodgate.Store.
func (s *Store) UpdateCampaign(ctx context.Context, id string, u floodgate.CampaignUpdate, now time.Time) (*floodgate.Campaign, error) {
	var out *floodgate.Campaign
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		c, err := scanCampaign(tx.QueryRow(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return campaignNotFound(id)
		} else if err != nil {
			return err
		}
		next, err := u.Apply(*c, now)
		if err != nil {
			return err
		}
		next.UpdatedAt = now
		if err := next.Validate(); err != nil {
			return err
		}
		out, err = scanCampaign(tx.QueryRow(ctx, `UPDATE campaigns SET name = $1, goal = $2, closes_at = $3,
			suggested_amounts = $4, updated_at = $5 WHERE id = $6 RETURNING `+campaignCols,
			next.Name, next.Goal, next.ClosesAt, intsOrEmpty(next.SuggestedAmounts), now, id))
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Campaign implements floodgate.Store.
func (s *Store) Campaign(ctx context.Context, id string) (*floodgate.Campaign, error) {
	c, err := scanCampaign(s.pool.QueryRow(ctx, `SELECT `+campaignCols+` FROM campaigns WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, campaignNotFound(id)
	}
	return c, err
}

// Campaigns implements floodgate.Store.
func (s *Store) Campaigns(ctx context.Context) ([]*floodgate.Campaign, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+campaignCols+` FROM campaigns ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*floodgate.Campaign, error) { return scanCampaign(r) })
}

// Totals implements floodgate.Store.
func (s *Store) Totals(ctx context.Context, campaignID string) (*floodgate.Totals, error) {
	var t floodgate.Totals
	err := s.pool.QueryRow(ctx, `SELECT t.campaign_id, c.currency, t.raised, t.donations, t.pending,
		t.pending_count, t.waiting, t.updated_at FROM totals t JOIN campaigns c ON c.id = t.campaign_id
		WHERE t.campaign_id = $1`, campaignID).
		Scan(&t.Campaign, &t.Currency, &t.Raised, &t.Donations, &t.Pending, &t.PendingCount, &t.Waiting, &t.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, campaignNotFound(campaignID)
	} else if err != nil {
		return nil, err
	}
	return &t, nil
}

// knownCampaigns reports which of the batch's campaigns exist, asking the
// database once about those not seen before.
func (s *Store) knownCampaigns(ctx context.Context, tx pgx.Tx, ds []*floodgate.Donation) (map[string]bool, error) {
	known := map[string]bool{}
	var ask []string
	for _, d := range ds {
		if _, seen := known[d.CampaignID]; seen {
			continue
		}
		_, ok := s.known.Load(d.CampaignID)
		known[d.CampaignID] = ok
		if !ok {
			ask = append(ask, d.CampaignID)
		}
	}
	if len(ask) == 0 {
		return known, nil
	}
	rows, err := tx.Query(ctx, `SELECT id FROM campaigns WHERE id = ANY($1::text[])`, ask)
	if err != nil {
		return nil, err
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, id := range found {
		known[id] = true
		s.known.Store(id, struct{}{})
	}
	return known, nil
}

const updTotals = `UPDATE totals SET raised = raised + $1, donations = donations + $2, pending = pending + $3,
	pending_count = pending_count + $4, waiting = waiting + $5, updated_at = $6 WHERE campaign_id = $7`

// queueTotals queues one update per campaign with a change, in campaign id
// order: every transaction takes totals rows last and in this order, so two
// transactions never wait on each other's totals in a cycle.
func queueTotals(b *pgx.Batch, deltas map[string]floodgate.TotalsDelta, now time.Time) {
	ids := make([]string, 0, len(deltas))
	for id, d := range deltas {
		if !d.Zero() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := deltas[id]
		b.Queue(updTotals, d.Raised, d.Donations, d.Pending, d.PendingCount, d.Waiting, now, id)
	}
}

// --- donations ---

const donationCols = `seq, id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
	payment_method, anonymous, message, declaration, client_addr, status, attempt, key_since,
	payment_intent_id, client_secret, next_action, failure_code, action_since, claimed_by, lease_until,
	created_at, updated_at, refunded, disputed`

// donationColsOf is donationCols qualified by a table alias, for UPDATE
// ... FROM ... RETURNING.
func donationColsOf(alias string) string {
	cols := strings.Split(donationCols, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

func scanDonation(row pgx.Row) (*floodgate.Donation, error) {
	var (
		d                    floodgate.Donation
		decl, next           []byte
		pi, secret, fail, by *string
		status               string
	)
	if err := row.Scan(&d.Seq, &d.ID, &d.CampaignID, &d.IdempotencyKey, &d.RequestHash, &d.Amount, &d.Currency,
		&d.Email, &d.Name, &d.PaymentMethod, &d.Anonymous, &d.Message, &decl, &d.ClientAddr, &status,
		&d.Attempt, &d.KeySince, &pi, &secret, &next, &fail, &d.ActionSince, &by, &d.LeaseUntil,
		&d.CreatedAt, &d.UpdatedAt, &d.Refunded, &d.Disputed); err != nil {
		return nil, err
	}
	d.Status = floodgate.DonationStatus(status)
	if decl != nil {
		d.Declaration = new(floodgate.Declaration)
		if err := json.Unmarshal(decl, d.Declaration); err != nil {
			return nil, fmt.Errorf("donation %s declaration: %w", d.ID, err)
		}
	}
	if next != nil {
		d.NextAction = json.RawMessage(next)
	}
	d.PaymentIntentID, d.ClientSecret, d.FailureCode, d.ClaimedBy = deref(pi), deref(secret), deref(fail), deref(by)
	return &d, nil
}

func collectDonations(rows pgx.Rows, err error) ([]*floodgate.Donation, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (*floodgate.Donation, error) { return scanDonation(r) })
}

func donationNotFound(id string) error {
	return floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
}

// insDonations inserts a whole batch in one statement: unnest turns the
// column arrays back into rows, in the batch's order (so seq increases
// along the batch), a key already stored is skipped rather than failing the
// statement, and each new row gets its first history line in the same
// statement.
const insDonations = `WITH ins AS (
	INSERT INTO donations (id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
		payment_method, anonymous, message, declaration, client_addr, status, created_at, updated_at)
	SELECT u.id, u.campaign_id, u.idempotency_key, u.request_hash, u.amount, u.currency, u.email, u.name,
		u.payment_method, u.anonymous, u.message, u.declaration::jsonb, u.client_addr, 'accepted', $14, $14
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::boolean[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY
		AS u (id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
			payment_method, anonymous, message, declaration, client_addr, ord)
	ORDER BY u.ord
	ON CONFLICT (campaign_id, idempotency_key) DO NOTHING
	RETURNING seq, id
), hist AS (
	INSERT INTO donation_history (donation_seq, n, status, at)
	SELECT seq, 0, 'accepted', $14 FROM ins
)
SELECT seq, id FROM ins`

// batchColumns holds a batch's rows as one array per column, for unnest.
type batchColumns struct {
	id, campaign, key, email, name, currency, pm, message, addr []string
	hash                                                        [][]byte
	amount                                                      []int64
	anonymous                                                   []bool
	declaration                                                 []*string
}

func (b *batchColumns) add(id string, d *floodgate.Donation) {
	b.id = append(b.id, id)
	b.campaign = append(b.campaign, d.CampaignID)
	b.key = append(b.key, d.IdempotencyKey)
	b.hash = append(b.hash, d.RequestHash)
	b.amount = append(b.amount, d.Amount)
	b.currency = append(b.currency, d.Currency)
	b.email = append(b.email, d.Email)
	b.name = append(b.name, d.Name)
	b.pm = append(b.pm, d.PaymentMethod)
	b.anonymous = append(b.anonymous, d.Anonymous)
	b.message = append(b.message, d.Message)
	b.declaration = append(b.declaration, declarationText(d.Declaration))
	b.addr = append(b.addr, d.ClientAddr)
}

func declarationText(d *floodgate.Declaration) *string {
	if d == nil {
		return nil
	}
	b, _ := json.Marshal(d) // a struct of strings always marshals
	s := string(b)
	return &s
}

// Accept implements floodgate.Store: one transaction per batch, whatever
// kinds it holds, whose commit (synchronous_commit=on) is the batch's one
// durable write.
func (s *Store) Accept(ctx context.Context, items []floodgate.Intake) ([]floodgate.AcceptResult, error) {
	results := make([]floodgate.AcceptResult, len(items))
	if len(items) == 0 {
		return results, nil
	}
	now := s.now()
	donations := floodgate.PartOf[*floodgate.Donation](items)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		clear(results)
		res, err := s.acceptDonations(ctx, tx, donations.Items, now)
		if err != nil {
			return err
		}
		donations.Answer(results, res)
		floodgate.RefuseUnanswered(items, results)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// acceptDonations stores a batch's donations in tx and returns one result
// per donation.
//
// The donations are inserted by one multi-row statement that skips keys
// already stored. A key inserted by a concurrent transaction makes the
// statement wait for it on the unique index; once that commits, the key is
// skipped, and the look-up that follows (a new statement, so a new READ
// COMMITTED snapshot) sees the row and answers with a replay or a
// mismatch. The same key twice in one batch is inserted once and the
// later copies are answered like any replay.
func (s *Store) acceptDonations(ctx context.Context, tx pgx.Tx, ds []*floodgate.Donation, now time.Time) ([]floodgate.AcceptResult, error) {
	results := make([]floodgate.AcceptResult, len(ds))
	if len(ds) == 0 {
		return results, nil
	}
	known, err := s.knownCampaigns(ctx, tx, ds)
	if err != nil {
		return nil, err
	}
	var (
		cols    batchColumns
		first   = map[floodgate.IntakeKey]int{} // the index in ds that inserts each key
		idAt    = map[string]int{}              // new donation id -> index in ds
		stored  = map[floodgate.IntakeKey]*floodgate.Donation{}
		deltas  = map[string]floodgate.TotalsDelta{}
		pending int // donations not yet answered
	)
	for i, d := range ds {
		if !known[d.CampaignID] {
			results[i].Err = campaignNotFound(d.CampaignID)
			continue
		}
		pending++
		k := d.IntakeKey()
		if _, dup := first[k]; dup {
			continue
		}
		first[k] = i
		id := d.ID
		if id == "" {
			id = floodgate.NewID(floodgate.DonationIDPrefix)
		}
		idAt[id] = i
		cols.add(id, d)
	}
	if pending == 0 {
		return results, nil
	}

	rows, err := tx.Query(ctx, insDonations, cols.id, cols.campaign, cols.key, cols.hash, cols.amount, cols.currency,
		cols.email, cols.name, cols.pm, cols.anonymous, cols.message, cols.declaration, cols.addr, now)
	if err != nil {
		return nil, err
	}
	type inserted struct {
		seq int64
		id  string
	}
	ins, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (inserted, error) {
		var v inserted
		err := r.Scan(&v.seq, &v.id)
		return v, err
	})
	if err != nil {
		return nil, err
	}
	for _, v := range ins {
		i, ok := idAt[v.id]
		if !ok {
			return nil, fmt.Errorf("insert returned unknown donation id %q", v.id)
		}
		d := ds[i]
		nd := *d
		nd.ID, nd.Seq, nd.Status, nd.CreatedAt, nd.UpdatedAt = v.id, v.seq, floodgate.StatusAccepted, now, now
		results[i].Intake = &nd
		stored[d.IntakeKey()] = &nd
		pending--
		delta := deltas[d.CampaignID]
		delta.Add(floodgate.Delta("", floodgate.StatusAccepted, d.Amount))
		deltas[d.CampaignID] = delta
	}

	if pending > 0 {
		// Keys that were already stored, by an earlier batch or one that
		// committed while this one waited.
		var camps, keys []string
		for k := range first {
			if _, ok := stored[k]; !ok {
				camps, keys = append(camps, k.Scope), append(keys, k.Key)
			}
		}
		if len(camps) > 0 {
			prev, err := collectDonations(tx.Query(ctx, `SELECT `+donationCols+` FROM donations
				WHERE (campaign_id, idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, camps, keys))
			if err != nil {
				return nil, err
			}
			for _, p := range prev {
				stored[p.IntakeKey()] = p
			}
		}
		for i, d := range ds {
			if results[i].Err != nil || results[i].Intake != nil {
				continue
			}
			p, ok := stored[d.IntakeKey()]
			if !ok {
				return nil, fmt.Errorf("donation with idempotency key %q in campaign %q was neither inserted nor found", d.IdempotencyKey, d.CampaignID)
			}
			results[i] = floodgate.Replay(p, d)
		}
	}

	if len(deltas) == 0 {
		return results, nil
	}
	b := &pgx.Batch{}
	queueTotals(b, deltas, now)
	return results, tx.SendBatch(ctx, b).Close()
}

// Donation implements floodgate.Store.
func (s *Store) Donation(ctx context.Context, id string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.pool.QueryRow(ctx, `SELECT `+donationCols+` FROM donations WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, donationNotFound(id)
	}
	return d, err
}

// DonationByKey implements floodgate.Store through the unique index on
// (campaign_id, idempotency_key).
func (s *Store) DonationByKey(ctx context.Context, campaignID, key string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.pool.QueryRow(ctx, `SELECT `+donationCols+` FROM donations WHERE campaign_id = $1 AND idempotency_key = $2`, campaignID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No donation holds this Idempotency-Key.")
	}
	return d, err
}

// DonationByPaymentIntent implements floodgate.Store.
func (s *Store) DonationByPaymentIntent(ctx context.Context, paymentIntentID string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.pool.QueryRow(ctx, `SELECT `+donationCols+` FROM donations WHERE payment_intent_id = $1`, paymentIntentID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No donation has PaymentIntent %q.", paymentIntentID)
	}
	return d, err
}

// History implements floodgate.Store. The outer join tells a donation
// without history (there is none: acceptance writes the first line) from
// one that does not exist, in one statement.
func (s *Store) History(ctx context.Context, id string) ([]floodgate.StatusChange, error) {
	rows, err := s.pool.Query(ctx, `SELECT h.status, h.at, h.failure_code, h.note FROM donations d
		LEFT JOIN donation_history h ON h.donation_seq = d.seq WHERE d.id = $1 ORDER BY h.n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := false
	out := []floodgate.StatusChange{}
	for rows.Next() {
		found = true
		var (
			status, fail, note *string
			at                 *time.Time
		)
		if err := rows.Scan(&status, &at, &fail, &note); err != nil {
			return nil, err
		}
		if status == nil {
			continue
		}
		out = append(out, floodgate.StatusChange{Status: floodgate.DonationStatus(*status), At: *at,
			FailureCode: deref(fail), Note: deref(note)})
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, donationNotFound(id)
	}
	return out, nil
}

const insHistory = `INSERT INTO donation_history (donation_seq, n, status, at, failure_code, note)
	VALUES ($1, (SELECT COALESCE(MAX(n), -1) + 1 FROM donation_history WHERE donation_seq = $1), $2, $3, $4, $5)`

// move locks a donation (SELECT ... FOR UPDATE, held until the
// transaction ends), asks decide what the change writes, and writes the
// Transition in one round trip, returning the donation as it now is. An
// error from decide comes back with the unchanged donation.
func (s *Store) move(ctx context.Context, id string, decide func(*floodgate.Donation) (floodgate.Transition, error)) (*floodgate.Donation, error) {
	var (
		out       *floodgate.Donation
		unchanged *floodgate.Donation
	)
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		unchanged = nil
		d, err := scanDonation(tx.QueryRow(ctx, `SELECT `+donationCols+` FROM donations WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return donationNotFound(id)
		} else if err != nil {
			return err
		}
		t, err := decide(d)
		if err != nil {
			unchanged = d
			return err
		}
		b := &pgx.Batch{}
		if err := queueWrite(b, d, t, func(nd *floodgate.Donation) { out = nd }); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return unchanged, err
	}
	return out, nil
}

// queueWrite queues t, decided on d: one UPDATE of the fields it changes,
// returning the row as it now is to done, its history line and its totals
// delta. Every state change is written by this one function.
func queueWrite(b *pgx.Batch, d *floodgate.Donation, t floodgate.Transition, done func(*floodgate.Donation)) error {
	query := `SELECT ` + donationCols + ` FROM donations WHERE seq = $1`
	args := []any{d.Seq}
	if len(t.Changed) > 0 {
		set := make([]string, len(t.Changed))
		for i, f := range t.Changed {
			col, v, err := column(f, t.Donation)
			if err != nil {
				return err
			}
			args = append(args, v)
			set[i] = fmt.Sprintf("%s = $%d", col, len(args))
		}
		query = `UPDATE donations SET ` + strings.Join(set, ", ") + ` WHERE seq = $1 RETURNING ` + donationCols
	}
	b.Queue(query, args...).QueryRow(func(row pgx.Row) error {
		nd, err := scanDonation(row)
		if err == nil {
			done(nd)
		}
		return err
	})
	if h := t.History; h != nil {
		b.Queue(insHistory, d.Seq, string(h.Status), h.At, h.FailureCode, h.Note)
	}
	queueTotals(b, map[string]floodgate.TotalsDelta{d.CampaignID: t.Delta}, t.At)
	return nil
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
		return "key_since", d.KeySince, nil
	case floodgate.FieldPaymentIntentID:
		return "payment_intent_id", nullString(d.PaymentIntentID), nil
	case floodgate.FieldClientSecret:
		return "client_secret", nullString(d.ClientSecret), nil
	case floodgate.FieldNextAction:
		// The provider's bytes, as sent: the column is json, not jsonb.
		return "next_action", nullString(string(d.NextAction)), nil
	case floodgate.FieldFailureCode:
		return "failure_code", nullString(d.FailureCode), nil
	case floodgate.FieldActionSince:
		return "action_since", d.ActionSince, nil
	case floodgate.FieldClaimedBy:
		return "claimed_by", nullString(d.ClaimedBy), nil
	case floodgate.FieldLeaseUntil:
		return "lease_until", d.LeaseUntil, nil
	case floodgate.FieldRefunded:
		return "refunded", d.Refunded, nil
	case floodgate.FieldDisputed:
		return "disputed", d.Disputed, nil
	case floodgate.FieldUpdatedAt:
		return "updated_at", d.UpdatedAt, nil
	}
	return "", nil, fmt.Errorf("postgres: no column holds donation field %s", f)
}

// Reverse implements floodgate.Store.
func (s *Store) Reverse(ctx context.Context, id string, kind floodgate.Reversal, total int64, at time.Time) (*floodgate.Donation, error) {
	at = micro(at)
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyReversal(d, kind, total, at)
	})
}

// Settle implements floodgate.Store.
func (s *Store) Settle(ctx context.Context, st floodgate.Settlement) (*floodgate.Donation, error) {
	if st.At.IsZero() {
		st.At = s.clock.Now()
	}
	st.At = micro(st.At)
	return s.move(ctx, st.DonationID, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplySettlement(d, st)
	})
}

// CancelDonation implements floodgate.Store.
func (s *Store) CancelDonation(ctx context.Context, id string, now time.Time) (*floodgate.Donation, error) {
	if now.IsZero() {
		now = s.clock.Now()
	}
	now = micro(now)
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyCancel(d, now)
	})
}

// ReplacePaymentMethod implements floodgate.Store.
func (s *Store) ReplacePaymentMethod(ctx context.Context, id, pm string, now time.Time) (*floodgate.Donation, error) {
	now = micro(now)
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyPaymentMethod(d, pm, now)
	})
}

// NewKeyGeneration implements floodgate.Store.
func (s *Store) NewKeyGeneration(ctx context.Context, owner, id string, from int, paymentIntentID string, now time.Time) (*floodgate.Donation, error) {
	now = micro(now)
	return s.move(ctx, id, func(d *floodgate.Donation) (floodgate.Transition, error) {
		return floodgate.ApplyNewKeyGeneration(d, owner, from, paymentIntentID, now)
	})
}

// Backlog implements floodgate.Store in one statement: the head of the
// partial index of waiting donations, and the sum of the per-campaign
// waiting counts.
func (s *Store) Backlog(ctx context.Context) (floodgate.Backlog, error) {
	var (
		b    floodgate.Backlog
		head *int64
		at   *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT (SELECT COALESCE(SUM(waiting), 0)::bigint FROM totals), h.seq, h.created_at
		FROM (SELECT 1) AS one LEFT JOIN LATERAL (
			SELECT seq, created_at FROM donations WHERE status = 'accepted' ORDER BY seq LIMIT 1
		) AS h ON true`).Scan(&b.Waiting, &head, &at)
	if err != nil {
		return floodgate.Backlog{}, err
	}
	if head != nil {
		b.HeadSeq, b.Oldest = *head, *at
	}
	return b, nil
}

// ClaimDonations implements floodgate.Store. Rows are chosen with FOR
// UPDATE SKIP LOCKED: a dispatcher never waits on rows another is claiming
// and never gets them, so any number of dispatchers on any number of nodes
// claim disjoint donations, each close to the head of the line.
func (s *Store) ClaimDonations(ctx context.Context, owner string, n int, now time.Time, lease time.Duration) ([]*floodgate.Donation, error) {
	if n <= 0 {
		return nil, nil
	}
	now = micro(now)
	until := micro(now.Add(lease))
	var out []*floodgate.Donation
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Gifts whose dispatcher died resume first, with their key unchanged.
		orphans, err := collectDonations(tx.Query(ctx, `WITH o AS (
				SELECT seq FROM donations WHERE status = 'processing' AND lease_until < $3
				ORDER BY lease_until, seq LIMIT $4 FOR UPDATE SKIP LOCKED)
			UPDATE donations d SET claimed_by = $1, lease_until = $2 FROM o WHERE d.seq = o.seq
			RETURNING `+donationColsOf("d"), owner, until, now, n))
		if err != nil {
			return err
		}
		out = orphans
		if len(orphans) >= n {
			return nil
		}
		fresh, err := collectDonations(tx.Query(ctx, `WITH l AS (
				SELECT seq FROM donations WHERE status = 'accepted'
				ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
			UPDATE donations d SET status = 'processing', claimed_by = $1, lease_until = $2,
				key_since = COALESCE(d.key_since, $3), updated_at = $3
			FROM l WHERE d.seq = l.seq
			RETURNING `+donationColsOf("d"), owner, until, now, n-len(orphans)))
		if err != nil || len(fresh) == 0 {
			return err
		}
		out = append(out, fresh...)
		seqs := make([]int64, len(fresh))
		deltas := map[string]floodgate.TotalsDelta{}
		for i, d := range fresh {
			seqs[i] = d.Seq
			delta := deltas[d.CampaignID]
			delta.Add(floodgate.Delta(floodgate.StatusAccepted, floodgate.StatusProcessing, d.Amount))
			deltas[d.CampaignID] = delta
		}
		b := &pgx.Batch{}
		// A later statement than the claim, so its snapshot sees every
		// history line committed before the rows were locked.
		b.Queue(`INSERT INTO donation_history (donation_seq, n, status, at)
			SELECT u.seq, (SELECT COALESCE(MAX(h.n), -1) + 1 FROM donation_history h WHERE h.donation_seq = u.seq),
				'processing', $2
			FROM unnest($1::bigint[]) AS u (seq)`, seqs, now)
		queueTotals(b, deltas, now)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *floodgate.Donation) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// ExtendLeases implements floodgate.Store.
func (s *Store) ExtendLeases(ctx context.Context, owner string, until time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE donations SET lease_until = $1 WHERE status = 'processing' AND claimed_by = $2`,
		micro(until), owner)
	return err
}

// ReleaseLeases implements floodgate.Store: a released lease ends at the
// Unix epoch, so the donation is an orphan any dispatcher resumes first.
func (s *Store) ReleaseLeases(ctx context.Context, owner string) error {
	_, err := s.pool.Exec(ctx, `UPDATE donations SET lease_until = 'epoch'
		WHERE status = 'processing' AND ($1::text = '' OR claimed_by = $1::text)`, owner)
	return err
}

// Defer implements floodgate.Store.
func (s *Store) Defer(ctx context.Context, owner, id string, until time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE donations SET claimed_by = NULL, lease_until = $1 WHERE id = $2 AND status = 'processing' AND claimed_by = $3`,
		micro(until), id, owner)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return floodgate.Errorf(floodgate.ESTATE, "Donation %q is not processing under this claim.", id)
	}
	return nil
}

// ActionExpired implements floodgate.Store.
func (s *Store) ActionExpired(ctx context.Context, before time.Time, n int) ([]*floodgate.Donation, error) {
	if n <= 0 {
		return nil, nil
	}
	return collectDonations(s.pool.Query(ctx, `SELECT `+donationCols+` FROM donations
		WHERE status = 'requires_action' AND action_since < $1 ORDER BY action_since, seq LIMIT $2`, micro(before), n))
}

// Secret implements floodgate.Store. The first node to ask inserts its
// random bytes; ON CONFLICT DO NOTHING waits for a concurrent insert of the
// same name to commit, and the SELECT after it (a new statement, so a new
// snapshot) reads whichever value won.
func (s *Store) Secret(ctx context.Context, name string) ([]byte, error) {
	key := "secret:" + name
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE name = $1`, key).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, err
	}
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh) // crypto/rand.Read never fails (Go 1.24+).
	if _, err := s.pool.Exec(ctx, `INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, key, fresh); err != nil {
		return nil, err
	}
	err = s.pool.QueryRow(ctx, `SELECT value FROM meta WHERE name = $1`, key).Scan(&v)
	return v, err
}
