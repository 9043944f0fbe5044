package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
)

// dbNow is the store's clock in SQL, its argument being $n: the database's
// statement_timestamp() (the same for every row of one statement, and the
// same clock for every node however their own clocks disagree), unless
// the argument stands in for it (Options.LeaseClock, tests only).
//
// A write made under a claim locks its order first and judges the lease
// by the locking statement's time: a lease that runs out while the
// statement waits for the lock may still be honoured, but never one that
// another claim has taken over meanwhile (the takeover changed the row,
// and the lock returns the row as it now is).
func dbNow(n int) string { return fmt.Sprintf("COALESCE($%d::timestamptz, statement_timestamp())", n) }

// clockArg is dbNow's argument: nil, or the lease clock's time.
func (s *Store) clockArg() any {
	if s.leaseClock == nil {
		return nil
	}
	return micro(s.leaseClock.Now())
}

// orderCols read a payment order, in the order orderRow scans: what the
// payment changes from the order, o, and what is charged from the donation
// it pays for, d, which shares its seq (see orderFrom). The order's
// payment method is the donation's until a new one replaces it.
const orderCols = `o.seq, o.kind, d.id, d.campaign_id, d.amount, d.currency,
	COALESCE(o.payment_method, d.payment_method), d.client_addr, o.status, o.attempt, o.key_since, o.format,
	o.payment_intent_id, o.client_secret, o.next_action, o.failure_code, o.action_since, o.claimed_by,
	o.lease_until, o.token, o.refunded, o.disputed, o.unknown_from, o.unknown_to, o.sweeps, o.swept_at,
	o.unknown_cause, o.absences, d.created_at, o.updated_at`

// orderFrom joins each order to the donation it pays for.
const orderFrom = ` FROM payment_orders o JOIN donations d ON d.seq = o.seq`

// byOrderID is the condition, with its argument ($1), that matches the
// order with id id: the one that pays for its donation.
func byOrderID(id string) (string, any) {
	return `d.id = $1`, floodgate.PaysForOf(floodgate.KindDonation, id)
}

// orderRow scans orderCols.
type orderRow struct {
	o                    floodgate.PaymentOrder
	kind, status         string
	format               int
	next                 []byte
	pi, secret, fail, by *string
	cause                *string
}

func (r *orderRow) dest() []any {
	o := &r.o
	return []any{&o.Seq, &r.kind, &o.PaysFor, &o.CampaignID, &o.Amount, &o.Currency, &o.PaymentMethod,
		&o.ClientAddr, &r.status, &o.Attempt, &o.KeySince, &r.format, &r.pi, &r.secret, &r.next, &r.fail,
		&o.ActionSince, &r.by, &o.LeaseUntil, &o.Token, &o.Refunded, &o.Disputed, &o.UnknownFrom, &o.UnknownTo, &o.Sweeps,
		&o.SweptAt, &r.cause, &o.Absences, &o.CreatedAt, &o.UpdatedAt}
}

func (r *orderRow) order() *floodgate.PaymentOrder {
	o := r.o
	o.ID = floodgate.OrderIDOf(o.PaysFor)
	o.Kind, o.Status, o.Format = floodgate.OrderKind(r.kind), floodgate.OrderStatus(r.status), floodgate.RequestFormat(r.format)
	o.PaymentIntentID, o.ClientSecret, o.FailureCode, o.ClaimedBy = deref(r.pi), deref(r.secret), deref(r.fail), deref(r.by)
	o.UnknownCause = deref(r.cause)
	if r.next != nil {
		o.NextAction = json.RawMessage(r.next)
	}
	return &o
}

// scanOrder scans orderCols and then extra.
func scanOrder(row pgx.Row, extra ...any) (*floodgate.PaymentOrder, error) {
	var r orderRow
	if err := row.Scan(append(r.dest(), extra...)...); err != nil {
		return nil, err
	}
	return r.order(), nil
}

// collect scans every row of a query with scan.
func collect[T any](scan func(pgx.Row) (T, error)) func(pgx.Rows, error) ([]T, error) {
	return func(rows pgx.Rows, err error) ([]T, error) {
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	}
}

var collectOrders = collect(func(r pgx.Row) (*floodgate.PaymentOrder, error) { return scanOrder(r) })

// Order implements floodgate.Store.
func (s *Store) Order(ctx context.Context, id string) (*floodgate.PaymentOrder, error) {
	where, arg := byOrderID(id)
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderCols+orderFrom+` WHERE `+where, arg))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.OrderNotFound(id)
	}
	return o, err
}

// OrderOf implements floodgate.Store.
func (s *Store) OrderOf(ctx context.Context, kind floodgate.OrderKind, paysFor string) (*floodgate.PaymentOrder, error) {
	if kind != floodgate.KindDonation {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No %s order for %q.", kind, paysFor)
	}
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderCols+orderFrom+` WHERE d.id = $1`, paysFor))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, donationNotFound(paysFor)
	}
	return o, err
}

// OrderByPaymentIntent implements floodgate.Store.
func (s *Store) OrderByPaymentIntent(ctx context.Context, paymentIntentID string) (*floodgate.PaymentOrder, error) {
	o, err := scanOrder(s.pool.QueryRow(ctx, `SELECT `+orderCols+orderFrom+` WHERE o.payment_intent_id = $1`, paymentIntentID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No payment order has PaymentIntent %q.", paymentIntentID)
	}
	return o, err
}

// NewKeyGeneration implements floodgate.Store.
func (s *Store) NewKeyGeneration(ctx context.Context, c floodgate.Claim, from int, paymentIntentID string, now time.Time) (*floodgate.PaymentOrder, error) {
	now = micro(now)
	return s.moveOrder(ctx, c.Order, `o.seq = $1`, c.Seq, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyNewKeyGeneration(o, c.Token, from, paymentIntentID, now, clock)
	})
}

// Defer implements floodgate.Store.
func (s *Store) Defer(ctx context.Context, c floodgate.Claim, wait time.Duration) error {
	_, err := s.moveOrder(ctx, c.Order, `o.seq = $1`, c.Seq, func(o *floodgate.PaymentOrder, now time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyDefer(o, c.Token, micro(now.Add(wait)), now)
	})
	return err
}

// Settle implements floodgate.Store.
func (s *Store) Settle(ctx context.Context, st floodgate.Settlement) (*floodgate.PaymentOrder, error) {
	if st.At.IsZero() {
		st.At = s.clock.Now()
	}
	st.At = micro(st.At)
	where, arg := byOrderID(st.OrderID)
	return s.moveOrder(ctx, st.OrderID, where, arg, func(o *floodgate.PaymentOrder, now time.Time) (floodgate.Transition, error) {
		return floodgate.ApplySettlement(o, st, now)
	})
}

// Reverse implements floodgate.Store.
func (s *Store) Reverse(ctx context.Context, id string, kind floodgate.Reversal, total int64, at time.Time) (*floodgate.PaymentOrder, error) {
	at = micro(at)
	where, arg := byOrderID(id)
	return s.moveOrder(ctx, id, where, arg, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyReversal(o, kind, total, at)
	})
}

// decision decides a change of order o, now being the store's clock.
type decision func(o *floodgate.PaymentOrder, now time.Time) (floodgate.Transition, error)

// moveOrder is move on order id, matched by where with arg (by its id, or
// by its place in line for a claim), ENOTFOUND when there is none.
func (s *Store) moveOrder(ctx context.Context, id, where string, arg any, decide decision) (*floodgate.PaymentOrder, error) {
	o, err := s.move(ctx, where, arg, decide, nil)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, floodgate.OrderNotFound(id)
	}
	return o, err
}

const insHistory = `INSERT INTO order_history (order_seq, n, status, at, failure_code, note)
	VALUES ($1, (SELECT COALESCE(MAX(n), 0) + 1 FROM order_history WHERE order_seq = $1), $2, $3, $4, $5)`

// move locks the order matched by where ($1 being arg) with SELECT ... FOR
// UPDATE OF the order (what it pays for never changes), held until the
// transaction ends, reads the store's clock in the
// same statement, asks decide what the change writes, and writes the
// Transition in one round trip, returning the order as it now is. A
// refusal from decide comes back with the unchanged order, after the
// history line it may carry is committed. read, when not nil, queues in
// that round trip the reads the caller wants, the order's seq in hand.
// pgx.ErrNoRows when nothing matches.
func (s *Store) move(ctx context.Context, where string, arg any, decide decision, read func(*pgx.Batch, int64)) (*floodgate.PaymentOrder, error) {
	var out, unchanged *floodgate.PaymentOrder
	var refusal error
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out, unchanged, refusal = nil, nil, nil
		var now time.Time
		o, err := scanOrder(tx.QueryRow(ctx, `SELECT `+orderCols+`, `+dbNow(2)+orderFrom+` WHERE `+where+` FOR UPDATE OF o`,
			arg, s.clockArg()), &now)
		if err != nil {
			return err
		}
		t, refused := decide(o, now)
		b := &pgx.Batch{}
		if refused != nil {
			unchanged, refusal = o, refused
			t = floodgate.Transition{History: t.History}
		}
		if err := queueWrite(b, o, t, func(no *floodgate.PaymentOrder) { out = no }); err != nil {
			return err
		}
		if read != nil {
			read(b, o.Seq)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	switch {
	case err != nil:
		return nil, err
	case refusal != nil:
		return unchanged, refusal
	}
	return out, nil
}

// queueWrite queues t, decided on o: one UPDATE of the fields it changes,
// returning the row as it now is to done, its history line and its
// effect. Every change of an order is written by this one function.
func queueWrite(b *pgx.Batch, o *floodgate.PaymentOrder, t floodgate.Transition, done func(*floodgate.PaymentOrder)) error {
	query := `SELECT ` + orderCols + orderFrom + ` WHERE o.seq = $1`
	args := []any{o.Seq}
	if len(t.Changed) > 0 {
		set := make([]string, len(t.Changed))
		for i, f := range t.Changed {
			col, v, err := column(f, t.Order)
			if err != nil {
				return err
			}
			args = append(args, v)
			set[i] = fmt.Sprintf("%s = $%d", col, len(args))
		}
		query = `UPDATE payment_orders o SET ` + strings.Join(set, ", ") + ` FROM donations d WHERE o.seq = $1 AND d.seq = o.seq RETURNING ` + orderCols
	}
	b.Queue(query, args...).QueryRow(func(row pgx.Row) error {
		no, err := scanOrder(row)
		if err == nil {
			done(no)
		}
		return err
	})
	if h := t.History; h != nil {
		b.Queue(insHistory, o.Seq, string(h.Status), h.At, h.FailureCode, h.Note)
	}
	if !t.Effect.Zero() {
		queueTotals(b, map[string]floodgate.TotalsDelta{t.Effect.Campaign: t.Effect.Totals}, t.At)
	}
	return nil
}

// column returns the column that holds field f and its value in o, as
// this engine stores it: none as NULL. next_action's column is json, not
// jsonb, so the provider's bytes come back as sent.
func column(f floodgate.OrderField, o *floodgate.PaymentOrder) (string, any, error) {
	switch v := o.Value(f).(type) {
	case string:
		return f.String(), nullString(v), nil
	case *time.Time, time.Time, int, int64:
		return f.String(), v, nil
	}
	return "", nil, fmt.Errorf("postgres: no column holds order field %s", f)
}

// Backlog implements floodgate.Store in one statement: the head of the
// partial index of waiting orders, and the sum of the per-campaign waiting
// counts.
func (s *Store) Backlog(ctx context.Context) (floodgate.Backlog, error) {
	var (
		b    floodgate.Backlog
		head *int64
		at   *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT (SELECT COALESCE(SUM(waiting), 0)::bigint FROM totals), h.seq, h.created_at
		FROM (SELECT 1) AS one LEFT JOIN LATERAL (
			SELECT o.seq, d.created_at`+orderFrom+` WHERE o.status = 'accepted' ORDER BY o.seq LIMIT 1
		) AS h ON true`).Scan(&b.Waiting, &head, &at)
	if err != nil {
		return floodgate.Backlog{}, err
	}
	if head != nil {
		b.HeadSeq, b.Oldest = *head, *at
	}
	return b, nil
}

// interval is $n, a number of microseconds, as an SQL interval.
func interval(n int) string { return fmt.Sprintf("($%d::bigint * interval '1 microsecond')", n) }

// ClaimOrders implements floodgate.Store. Rows are chosen with FOR UPDATE
// SKIP LOCKED: a dispatcher never waits on rows another is claiming and
// never gets them, so any number of dispatchers on any number of nodes
// claim disjoint orders, each close to the head of the line. Each claimed
// row draws its fencing token from the claim_tokens sequence, and its
// lease is judged and granted on the database's clock.
func (s *Store) ClaimOrders(ctx context.Context, owner string, n int, lease time.Duration) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	clock := s.clockArg()
	var out []*floodgate.PaymentOrder
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		// Orders whose claim ran out (PaymentOrder.Held no more) resume
		// first, with their key unchanged, under a new token; an order
		// the sweeps gave a new key among them, its key stamped as first
		// sent now. An order whose outcome is unknown is the sweeps' (no
		// lease: never taken).
		orphans, err := collectOrders(tx.Query(ctx, `WITH c AS (
				SELECT seq FROM payment_orders WHERE status = 'processing' AND lease_until <= `+dbNow(3)+`
					AND unknown_from IS NULL
				ORDER BY lease_until, seq LIMIT $4 FOR UPDATE SKIP LOCKED)
			UPDATE payment_orders o SET claimed_by = $1, lease_until = `+dbNow(3)+` + `+interval(2)+`,
				token = nextval('claim_tokens'), key_since = COALESCE(o.key_since, `+dbNow(3)+`)
			FROM c JOIN donations d ON d.seq = c.seq WHERE o.seq = c.seq
			RETURNING `+orderCols, owner, lease.Microseconds(), clock, n))
		if err != nil {
			return err
		}
		out = orphans
		if len(orphans) >= n {
			return nil
		}
		rows, err := tx.Query(ctx, `WITH l AS (
				SELECT seq FROM payment_orders WHERE status = 'accepted'
				ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED)
			UPDATE payment_orders o SET status = 'processing', claimed_by = $1,
				lease_until = `+dbNow(3)+` + `+interval(2)+`, token = nextval('claim_tokens'),
				key_since = COALESCE(o.key_since, `+dbNow(3)+`), updated_at = `+dbNow(3)+`
			FROM l JOIN donations d ON d.seq = l.seq WHERE o.seq = l.seq
			RETURNING `+orderCols+`, `+dbNow(3), owner, lease.Microseconds(), clock, n-len(orphans))
		if err != nil {
			return err
		}
		var now time.Time
		fresh, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*floodgate.PaymentOrder, error) { return scanOrder(r, &now) })
		if err != nil || len(fresh) == 0 {
			return err
		}
		out = append(out, fresh...)
		seqs := make([]int64, len(fresh))
		deltas := map[string]floodgate.TotalsDelta{}
		for i, o := range fresh {
			seqs[i] = o.Seq
			delta := deltas[o.CampaignID]
			delta.Add(floodgate.Delta(floodgate.StatusAccepted, floodgate.StatusProcessing, o.Amount))
			deltas[o.CampaignID] = delta
		}
		b := &pgx.Batch{}
		// A later statement than the claim, so its snapshot sees every
		// history line committed before the rows were locked.
		b.Queue(`INSERT INTO order_history (order_seq, n, status, at)
			SELECT u.seq, (SELECT COALESCE(MAX(h.n), 0) + 1 FROM order_history h WHERE h.order_seq = u.seq),
				'processing', $2
			FROM unnest($1::bigint[]) AS u (seq)`, seqs, now)
		queueTotals(b, deltas, now)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b *floodgate.PaymentOrder) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// held is the condition, in SQL, that the claim (c.seq, c.token) still
// holds order p at the store's clock ($1): PaymentOrder.Held.
const held = `p.seq = c.seq AND p.token = c.token AND p.token <> 0 AND p.claimed_by IS NOT NULL AND p.lease_until > ` +
	`COALESCE($1::timestamptz, statement_timestamp())`

// claimColumns are claims as the arrays unnest reads.
func claimColumns(claims []floodgate.Claim) (seqs, tokens []int64) {
	for _, c := range claims {
		seqs, tokens = append(seqs, c.Seq), append(tokens, c.Token)
	}
	return seqs, tokens
}

// ExtendClaims implements floodgate.Store in one statement.
func (s *Store) ExtendClaims(ctx context.Context, claims []floodgate.Claim, lease time.Duration) (int, error) {
	if len(claims) == 0 {
		return 0, nil
	}
	seqs, tokens := claimColumns(claims)
	tag, err := s.pool.Exec(ctx, `UPDATE payment_orders p SET lease_until = `+dbNow(1)+` + `+interval(4)+`
		FROM unnest($2::bigint[], $3::bigint[]) AS c (seq, token) WHERE `+held, s.clockArg(), seqs, tokens, lease.Microseconds())
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}

// ReleaseClaims implements floodgate.Store: a released lease ends at the
// Unix epoch, so the order is one any dispatcher resumes first.
func (s *Store) ReleaseClaims(ctx context.Context, claims []floodgate.Claim) error {
	if len(claims) == 0 {
		return nil
	}
	seqs, tokens := claimColumns(claims)
	_, err := s.pool.Exec(ctx, `UPDATE payment_orders p SET lease_until = 'epoch'
		FROM unnest($2::bigint[], $3::bigint[]) AS c (seq, token) WHERE `+held, s.clockArg(), seqs, tokens)
	return err
}

// TakeBackClaims implements floodgate.Store: every processing order's
// lease ends at the Unix epoch, each under a new token; an order whose
// outcome is unknown is held by no claim and is left alone.
func (s *Store) TakeBackClaims(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, `UPDATE payment_orders SET lease_until = 'epoch', token = nextval('claim_tokens')
		WHERE status = 'processing' AND unknown_from IS NULL`)
	return err
}

// ActionExpired implements floodgate.Store.
func (s *Store) ActionExpired(ctx context.Context, before time.Time, after floodgate.ActionCursor, n int) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	if after == (floodgate.ActionCursor{}) {
		return collectOrders(s.pool.Query(ctx, `SELECT `+orderCols+orderFrom+`
			WHERE o.status = 'requires_action' AND o.action_since < $1 ORDER BY o.action_since, o.seq LIMIT $2`, micro(before), n))
	}
	return collectOrders(s.pool.Query(ctx, `SELECT `+orderCols+orderFrom+`
		WHERE o.status = 'requires_action' AND o.action_since < $1 AND (o.action_since, o.seq) > ($2, $3)
		ORDER BY o.action_since, o.seq LIMIT $4`, micro(before), micro(after.Since), after.Seq, n))
}
