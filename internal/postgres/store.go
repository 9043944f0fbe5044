package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
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
	// LeaseClock, when set, stands in for the database's clock in every
	// lease and fence (tests move it by hand). Nil, as in production,
	// judges them by PostgreSQL's clock: one clock for every node, however
	// their own clocks disagree.
	LeaseClock floodgate.Clock
}

// Store is floodgate.Store on PostgreSQL, shared by any number of nodes.
type Store struct {
	pool       *pgxpool.Pool
	clock      floodgate.Clock
	leaseClock floodgate.Clock
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
	return &Store{pool: pool, clock: opts.Clock, leaseClock: opts.LeaseClock}, nil
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

// donationCols reads a donation, d, with its order's state (orderCols):
// what the donor gave, then what the payment made of it.
const donationCols = `d.seq, d.id, d.campaign_id, d.idempotency_key, d.request_hash, d.amount, d.currency, d.email, d.name,
	d.anonymous, d.message, d.declaration, d.created_at, ` + orderCols

// donationFrom joins a donation to its order, which shares its seq.
const donationFrom = orderFrom

func scanDonation(row pgx.Row) (*floodgate.Donation, error) {
	var (
		d    floodgate.Donation
		decl []byte
		o    orderRow
	)
	dest := append([]any{&d.Seq, &d.ID, &d.CampaignID, &d.IdempotencyKey, &d.RequestHash, &d.Amount, &d.Currency,
		&d.Email, &d.Name, &d.Anonymous, &d.Message, &decl, &d.CreatedAt}, o.dest()...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if decl != nil {
		d.Declaration = new(floodgate.Declaration)
		if err := json.Unmarshal(decl, d.Declaration); err != nil {
			return nil, fmt.Errorf("donation %s declaration: %w", d.ID, err)
		}
	}
	d.ShowOrder(o.order())
	return &d, nil
}

var collectDonations = collect(scanDonation)

func donationNotFound(id string) error {
	return floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", id)
}

// insDonations inserts a whole batch in one statement: unnest turns the
// column arrays back into rows, in the batch's order (so seq increases
// along the batch), a key already stored is skipped rather than failing the
// statement, and each new donation gets its payment order, at its seq, as
// floodgate.NewOrder describes it (in request format $15), in the same
// statement. The first line of an order's history, its acceptance, is not
// written: History reads it from the donation (see historyOf).
const insDonations = `WITH ins AS (
	INSERT INTO donations (id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
		payment_method, anonymous, message, declaration, client_addr, created_at)
	SELECT u.id, u.campaign_id, u.idempotency_key, u.request_hash, u.amount, u.currency, u.email, u.name,
		u.payment_method, u.anonymous, u.message, u.declaration::jsonb, u.client_addr, $14
	FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::bigint[], $6::text[], $7::text[],
		$8::text[], $9::text[], $10::boolean[], $11::text[], $12::text[], $13::text[]) WITH ORDINALITY
		AS u (id, campaign_id, idempotency_key, request_hash, amount, currency, email, name,
			payment_method, anonymous, message, declaration, client_addr, ord)
	ORDER BY u.ord
	ON CONFLICT (campaign_id, idempotency_key) DO NOTHING
	RETURNING seq, id
), ord AS (
	INSERT INTO payment_orders (seq, kind, status, format, updated_at)
	SELECT seq, 'donation', 'accepted', $15, $14 FROM ins
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
		cols.email, cols.name, cols.pm, cols.anonymous, cols.message, cols.declaration, cols.addr, now,
		int(floodgate.CurrentFormat))
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
		nd.ID, nd.Seq = v.id, v.seq
		nd.Accepted(now)
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
			prev, err := collectDonations(tx.Query(ctx, `SELECT `+donationCols+donationFrom+`
				WHERE (d.campaign_id, d.idempotency_key) IN (SELECT * FROM unnest($1::text[], $2::text[]))`, camps, keys))
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
	d, err := scanDonation(s.pool.QueryRow(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, donationNotFound(id)
	}
	return d, err
}

// DonationByKey implements floodgate.Store through the unique index on
// (campaign_id, idempotency_key).
func (s *Store) DonationByKey(ctx context.Context, campaignID, key string) (*floodgate.Donation, error) {
	d, err := scanDonation(s.pool.QueryRow(ctx, `SELECT `+donationCols+donationFrom+` WHERE d.campaign_id = $1 AND d.idempotency_key = $2`, campaignID, key))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No donation holds this Idempotency-Key.")
	}
	return d, err
}

// historyOf reads the history of the order of the donation with id $1,
// oldest first. Its first line, the acceptance (line 0), is the order's
// creation: an order accepted since payment orders keeps no row for it,
// and it is read from the donation; one accepted before them kept that
// row, and it is read as it was. Every later line is numbered after it.
const historyOf = `SELECT h.n, h.status, h.at, h.failure_code, h.note FROM donations d
		JOIN order_history h ON h.order_seq = d.seq WHERE d.id = $1
	UNION ALL
	SELECT 0, 'accepted', d.created_at, '', '' FROM donations d WHERE d.id = $1
		AND NOT EXISTS (SELECT 1 FROM order_history h WHERE h.order_seq = d.seq AND h.n = 0)
	ORDER BY 1`

// History implements floodgate.Store in one statement: no line means no
// donation, since every order's history has its acceptance.
func (s *Store) History(ctx context.Context, id string) ([]floodgate.StatusChange, error) {
	rows, err := s.pool.Query(ctx, historyOf, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []floodgate.StatusChange{}
	for rows.Next() {
		var (
			n      int
			status string
			c      floodgate.StatusChange
		)
		if err := rows.Scan(&n, &status, &c.At, &c.FailureCode, &c.Note); err != nil {
			return nil, err
		}
		c.Status = floodgate.DonationStatus(status)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, donationNotFound(id)
	}
	return out, nil
}

// CancelDonation implements floodgate.Store.
func (s *Store) CancelDonation(ctx context.Context, id string, now time.Time) (*floodgate.Donation, error) {
	if now.IsZero() {
		now = s.clock.Now()
	}
	now = micro(now)
	return s.moveDonation(ctx, id, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyCancel(o, now)
	})
}

// ReplacePaymentMethod implements floodgate.Store.
func (s *Store) ReplacePaymentMethod(ctx context.Context, id, pm string, now time.Time) (*floodgate.Donation, error) {
	now = micro(now)
	return s.moveDonation(ctx, id, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyPaymentMethod(o, pm, now)
	})
}

// moveDonation is move on a donation's order, found by the donation's
// id; it returns the donation as it now is, or, with a refusal, as it was.
func (s *Store) moveDonation(ctx context.Context, id string, decide decision) (*floodgate.Donation, error) {
	var out *floodgate.Donation
	_, err := s.move(ctx, `d.id = $1`, id, decide, func(b *pgx.Batch, seq int64) {
		b.Queue(`SELECT `+donationCols+donationFrom+` WHERE d.seq = $1`, seq).QueryRow(func(row pgx.Row) (err error) {
			out, err = scanDonation(row)
			return err
		})
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, donationNotFound(id)
	}
	return out, err
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
