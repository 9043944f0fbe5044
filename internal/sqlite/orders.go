package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/floodgate/floodgate"
)

// The store's clock is the database's: one process opens the file (the
// process lock), so every lease and every fence is judged by that
// process's clock, s.clock, and no other node's clock can disagree with
// it.

// orderCols read a payment order, in the order orderRow scans: what the
// payment changes from the order, o, and what is charged from the donation
// it pays for, d, which shares its seq (see orderFrom). The order's
// payment method is the donation's until a new one replaces it.
const orderCols = `o.seq, o.kind, d.id, d.campaign_id, d.amount, d.currency,
	COALESCE(o.payment_method, d.payment_method), d.client_addr, o.status, o.attempt, o.key_since, o.format,
	o.payment_intent_id, o.client_secret, o.next_action, o.failure_code, o.action_since, o.claimed_by,
	o.lease_until, o.token, o.refunded, o.disputed, d.created_at, o.updated_at`

// orderFrom joins each order to the donation it pays for.
const orderFrom = ` FROM payment_orders o JOIN donations d ON d.seq = o.seq`

// byOrderID is the condition, with its argument, that matches the order
// with id id: the one that pays for its donation.
func byOrderID(id string) (string, any) {
	return `d.id = ?`, floodgate.PaysForOf(floodgate.KindDonation, id)
}

// orderRow scans orderCols.
type orderRow struct {
	o                                 floodgate.PaymentOrder
	kind, status                      string
	keySince, actionSince, leaseUntil sql.NullInt64
	pi, secret, next, fail, by        sql.NullString
	format                            int
	created, updated                  int64
}

func (r *orderRow) dest() []any {
	o := &r.o
	return []any{&o.Seq, &r.kind, &o.PaysFor, &o.CampaignID, &o.Amount, &o.Currency, &o.PaymentMethod,
		&o.ClientAddr, &r.status, &o.Attempt, &r.keySince, &r.format, &r.pi, &r.secret, &r.next, &r.fail,
		&r.actionSince, &r.by, &r.leaseUntil, &o.Token, &o.Refunded, &o.Disputed, &r.created, &r.updated}
}

func (r *orderRow) order() *floodgate.PaymentOrder {
	o := r.o
	o.ID = floodgate.OrderIDOf(o.PaysFor)
	o.Kind, o.Status, o.Format = floodgate.OrderKind(r.kind), floodgate.OrderStatus(r.status), floodgate.RequestFormat(r.format)
	o.KeySince, o.ActionSince, o.LeaseUntil = timePtr(r.keySince), timePtr(r.actionSince), timePtr(r.leaseUntil)
	o.PaymentIntentID, o.ClientSecret, o.FailureCode, o.ClaimedBy = r.pi.String, r.secret.String, r.fail.String, r.by.String
	if r.next.Valid {
		o.NextAction = json.RawMessage(r.next.String)
	}
	o.CreatedAt, o.UpdatedAt = fromNanos(r.created), fromNanos(r.updated)
	return &o
}

func scanOrder(sc scanner) (*floodgate.PaymentOrder, error) {
	var r orderRow
	if err := sc.Scan(r.dest()...); err != nil {
		return nil, err
	}
	return r.order(), nil
}

type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}

// queryAll runs query and scans each row with scan.
func queryAll[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

func queryOrders(ctx context.Context, q querier, query string, args ...any) ([]*floodgate.PaymentOrder, error) {
	return queryAll(ctx, q, scanOrder, query, args...)
}

// Order implements floodgate.Store.
func (s *Store) Order(ctx context.Context, id string) (*floodgate.PaymentOrder, error) {
	where, arg := byOrderID(id)
	o, err := scanOrder(s.r.QueryRowContext(ctx, `SELECT `+orderCols+orderFrom+` WHERE `+where, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.OrderNotFound(id)
	}
	return o, err
}

// OrderOf implements floodgate.Store.
func (s *Store) OrderOf(ctx context.Context, kind floodgate.OrderKind, paysFor string) (*floodgate.PaymentOrder, error) {
	if kind != floodgate.KindDonation {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No %s order for %q.", kind, paysFor)
	}
	o, err := scanOrder(s.r.QueryRowContext(ctx, `SELECT `+orderCols+orderFrom+` WHERE d.id = ?`, paysFor))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Donation %q not found.", paysFor)
	}
	return o, err
}

// OrderByPaymentIntent implements floodgate.Store.
func (s *Store) OrderByPaymentIntent(ctx context.Context, paymentIntentID string) (*floodgate.PaymentOrder, error) {
	o, err := scanOrder(s.r.QueryRowContext(ctx, `SELECT `+orderCols+orderFrom+` WHERE o.payment_intent_id = ?`, paymentIntentID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "No payment order has PaymentIntent %q.", paymentIntentID)
	}
	return o, err
}

// NewKeyGeneration implements floodgate.Store.
func (s *Store) NewKeyGeneration(ctx context.Context, c floodgate.Claim, from int, paymentIntentID string, now time.Time) (*floodgate.PaymentOrder, error) {
	return s.moveOrder(ctx, c.Order, `o.seq = ?`, c.Seq, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyNewKeyGeneration(o, c.Token, from, paymentIntentID, now, clock)
	})
}

// Defer implements floodgate.Store.
func (s *Store) Defer(ctx context.Context, c floodgate.Claim, wait time.Duration) error {
	_, err := s.moveOrder(ctx, c.Order, `o.seq = ?`, c.Seq, func(o *floodgate.PaymentOrder, now time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyDefer(o, c.Token, now.Add(wait), now)
	})
	return err
}

// Settle implements floodgate.Store.
func (s *Store) Settle(ctx context.Context, st floodgate.Settlement) (*floodgate.PaymentOrder, error) {
	if st.At.IsZero() {
		st.At = s.clock.Now()
	}
	where, arg := byOrderID(st.OrderID)
	return s.moveOrder(ctx, st.OrderID, where, arg, func(o *floodgate.PaymentOrder, now time.Time) (floodgate.Transition, error) {
		return floodgate.ApplySettlement(o, st, now)
	})
}

// Reverse implements floodgate.Store.
func (s *Store) Reverse(ctx context.Context, id string, kind floodgate.Reversal, total int64, at time.Time) (*floodgate.PaymentOrder, error) {
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
	if errors.Is(err, sql.ErrNoRows) {
		return nil, floodgate.OrderNotFound(id)
	}
	return o, err
}

// move reads the order matched by where (with its one argument arg) in a
// write transaction (BEGIN IMMEDIATE: no other writer until it commits),
// asks decide what the change writes, writes the Transition and returns
// the order as it now is. A refusal from decide comes back with the
// unchanged order, after the history line it may carry is written. read,
// when not nil, is called in the transaction once the change is written
// (or refused), with the order's seq. sql.ErrNoRows when nothing matches.
func (s *Store) move(ctx context.Context, where string, arg any, decide decision, read func(*sql.Tx, int64) error) (*floodgate.PaymentOrder, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()
	o, err := scanOrder(tx.QueryRowContext(ctx, `SELECT `+orderCols+orderFrom+` WHERE `+where, arg))
	if err != nil {
		return nil, err
	}
	t, refused := decide(o, s.clock.Now())
	if refused != nil {
		t = floodgate.Transition{History: t.History}
	}
	if err := s.write(ctx, tx, o, t); err != nil {
		return nil, err
	}
	out := o
	if refused == nil {
		if out, err = scanOrder(tx.QueryRowContext(ctx, `SELECT `+orderCols+orderFrom+` WHERE o.seq = ?`, o.Seq)); err != nil {
			return nil, err
		}
	}
	if read != nil {
		if err := read(tx, o.Seq); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return out, refused
}

// write applies t, decided on o, inside tx: one UPDATE of the fields it
// changes, its history line and its effect. Every change of an order is
// written by this one function.
func (s *Store) write(ctx context.Context, tx *sql.Tx, o *floodgate.PaymentOrder, t floodgate.Transition) error {
	if len(t.Changed) > 0 {
		set := make([]string, len(t.Changed))
		args := make([]any, 0, len(t.Changed)+1)
		for i, f := range t.Changed {
			col, v, err := column(f, t.Order)
			if err != nil {
				return err
			}
			set[i] = col + " = ?"
			args = append(args, v)
		}
		args = append(args, o.Seq)
		if _, err := tx.ExecContext(ctx, `UPDATE payment_orders SET `+strings.Join(set, ", ")+` WHERE seq = ?`, args...); err != nil {
			return err
		}
	}
	if h := t.History; h != nil {
		if _, err := tx.StmtContext(ctx, s.insHistory).ExecContext(ctx, o.Seq, o.Seq, string(h.Status), nanos(h.At), h.FailureCode, h.Note); err != nil {
			return err
		}
	}
	if t.Effect.Zero() {
		return nil
	}
	return s.applyTotals(ctx, tx, map[string]floodgate.TotalsDelta{t.Effect.Campaign: t.Effect.Totals}, t.At)
}

// column returns the column that holds field f and its value in o, as
// this engine stores it: times as Unix nanoseconds, none as NULL.
func column(f floodgate.OrderField, o *floodgate.PaymentOrder) (string, any, error) {
	switch v := o.Value(f).(type) {
	case string:
		return f.String(), nullString(v), nil
	case *time.Time:
		return f.String(), nullNanos(v), nil
	case time.Time:
		return f.String(), nanos(v), nil
	case int, int64:
		return f.String(), v, nil
	}
	return "", nil, fmt.Errorf("sqlite: no column holds order field %s", f)
}

// Backlog implements floodgate.Store with two index look-ups.
func (s *Store) Backlog(ctx context.Context) (floodgate.Backlog, error) {
	var (
		b       floodgate.Backlog
		created sql.NullInt64
	)
	err := s.r.QueryRowContext(ctx, `SELECT o.seq, d.created_at`+orderFrom+` WHERE o.status = 'accepted' ORDER BY o.seq LIMIT 1`).
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

// tokens reserves n fencing tokens in tx and returns the last one issued
// before them: the reserved ones are base+1 ... base+n.
func tokens(ctx context.Context, tx *sql.Tx, n int) (base int64, err error) {
	err = tx.QueryRowContext(ctx, `UPDATE counters SET value = value + ? WHERE name = 'claim_token' RETURNING value - ?`, n, n).Scan(&base)
	return base, err
}

// ClaimOrders implements floodgate.Store. Each claimed order draws its
// fencing token from the counter row, in line order, in the claim's own
// transaction.
func (s *Store) ClaimOrders(ctx context.Context, owner string, n int, lease time.Duration) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	now := s.clock.Now()
	until := nanos(now.Add(lease))
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer func() { _ = tx.Rollback() }()

	// Orders whose claim ran out resume first, with their key unchanged,
	// under a new token.
	rows, err := tx.QueryContext(ctx, `SELECT seq FROM payment_orders WHERE status = 'processing' AND lease_until < ?
		ORDER BY lease_until, seq LIMIT ?`, nanos(now), n)
	if err != nil {
		return nil, err
	}
	orphans, err := collectSeqs(rows)
	if err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT seq FROM payment_orders WHERE status = 'accepted' ORDER BY seq LIMIT ?`, n-len(orphans))
	if err != nil {
		return nil, err
	}
	fresh, err := collectSeqs(rows)
	if err != nil {
		return nil, err
	}
	seqs := append(orphans, fresh...)
	if len(seqs) == 0 {
		return nil, nil
	}
	base, err := tokens(ctx, tx, len(seqs))
	if err != nil {
		return nil, err
	}
	take, err := tx.PrepareContext(ctx, `UPDATE payment_orders SET claimed_by = ?, lease_until = ?, token = ? WHERE seq = ?`)
	if err != nil {
		return nil, err
	}
	defer take.Close()
	claim, err := tx.PrepareContext(ctx, `UPDATE payment_orders SET status = 'processing', claimed_by = ?, lease_until = ?, token = ?,
		key_since = COALESCE(key_since, ?), updated_at = ? WHERE seq = ?`)
	if err != nil {
		return nil, err
	}
	defer claim.Close()
	hist := tx.StmtContext(ctx, s.insHistory)
	args := make([]any, len(seqs))
	for i, seq := range seqs {
		args[i] = seq
		token := base + int64(i) + 1
		if i < len(orphans) {
			if _, err := take.ExecContext(ctx, owner, until, token, seq); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := claim.ExecContext(ctx, owner, until, token, nanos(now), nanos(now), seq); err != nil {
			return nil, err
		}
		if _, err := hist.ExecContext(ctx, seq, seq, string(floodgate.StatusProcessing), nanos(now), "", ""); err != nil {
			return nil, err
		}
	}
	out, err := queryOrders(ctx, tx, `SELECT `+orderCols+orderFrom+` WHERE o.seq IN (`+
		strings.TrimSuffix(strings.Repeat("?, ", len(seqs)), ", ")+`) ORDER BY o.seq`, args...)
	if err != nil {
		return nil, err
	}
	deltas := map[string]floodgate.TotalsDelta{}
	for _, o := range out {
		if slices.Contains(orphans, o.Seq) {
			continue
		}
		delta := deltas[o.CampaignID]
		delta.Add(floodgate.Delta(floodgate.StatusAccepted, floodgate.StatusProcessing, o.Amount))
		deltas[o.CampaignID] = delta
	}
	if err := s.applyTotals(ctx, tx, deltas, now); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	return out, nil
}

func collectSeqs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var seq int64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		out = append(out, seq)
	}
	return out, rows.Err()
}

// held is the condition, in SQL, that a claim (seq = ?, token = ?) still
// holds its order at a time (?): PaymentOrder.Held.
const held = `seq = ? AND token = ? AND token <> 0 AND claimed_by IS NOT NULL AND lease_until > ?`

// ExtendClaims implements floodgate.Store.
func (s *Store) ExtendClaims(ctx context.Context, claims []floodgate.Claim, lease time.Duration) (int, error) {
	if len(claims) == 0 {
		return 0, nil
	}
	now := s.clock.Now()
	n, err := s.eachClaim(ctx, claims, `UPDATE payment_orders SET lease_until = ? WHERE `+held, nanos(now.Add(lease)), nanos(now))
	return n, err
}

// ReleaseClaims implements floodgate.Store: a released lease ends at the
// Unix epoch, so the order is one any dispatcher resumes first.
func (s *Store) ReleaseClaims(ctx context.Context, claims []floodgate.Claim) error {
	if len(claims) == 0 {
		return nil
	}
	_, err := s.eachClaim(ctx, claims, `UPDATE payment_orders SET lease_until = ? WHERE `+held, 0, nanos(s.clock.Now()))
	return err
}

// eachClaim runs update, whose arguments are (value, seq, token, now), for
// every claim in one transaction, and returns how many rows it changed.
func (s *Store) eachClaim(ctx context.Context, claims []floodgate.Claim, update string, value, now int64) (int, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	st, err := tx.PrepareContext(ctx, update)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var n int64
	for _, c := range claims {
		res, err := st.ExecContext(ctx, value, c.Seq, c.Token, now)
		if err != nil {
			return 0, err
		}
		k, err := res.RowsAffected()
		if err != nil {
			return 0, err
		}
		n += k
	}
	return int(n), tx.Commit()
}

// TakeBackClaims implements floodgate.Store: every processing order's
// lease ends at the Unix epoch, each under a new token.
func (s *Store) TakeBackClaims(ctx context.Context) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM payment_orders WHERE status = 'processing'`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	base, err := tokens(ctx, tx, n)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE payment_orders SET lease_until = 0, token = ? + t.n
		FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM payment_orders WHERE status = 'processing') AS t
		WHERE payment_orders.seq = t.seq`, base); err != nil {
		return err
	}
	return tx.Commit()
}

// ActionExpired implements floodgate.Store. n <= 0 asks for nothing:
// SQLite would read a negative LIMIT as none at all.
func (s *Store) ActionExpired(ctx context.Context, before time.Time, n int) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	return queryOrders(ctx, s.r, `SELECT `+orderCols+orderFrom+`
		WHERE o.status = 'requires_action' AND o.action_since < ? ORDER BY o.action_since, o.seq LIMIT ?`, nanos(before), n)
}
