package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/floodgate/floodgate"
)

// MarkUnknown implements floodgate.Store.
func (s *Store) MarkUnknown(ctx context.Context, c floodgate.Claim, w floodgate.Window, cause string, now time.Time) (*floodgate.PaymentOrder, error) {
	return s.moveOrder(ctx, c.Order, `o.seq = ?`, c.Seq, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyUnknown(o, c.Token, w, cause, now, clock)
	})
}

// Unknowns implements floodgate.Store from the index of unknown orders.
func (s *Store) Unknowns(ctx context.Context, n int) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	return queryOrders(ctx, s.r, `SELECT `+orderCols+orderFrom+`
		WHERE o.unknown_from IS NOT NULL ORDER BY o.unknown_from, o.seq LIMIT ?`, n)
}

// RecordSweep implements floodgate.Store: each order is changed as move
// changes one, all in one write transaction; one that is gone, or changed
// since the sweep saw it (ApplySweep's ESTATE), is skipped.
func (s *Store) RecordSweep(ctx context.Context, swept []floodgate.SweptOrder, start floodgate.SweepStart, now time.Time) (int, error) {
	if len(swept) == 0 {
		return 0, nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback() }()
	n := 0
	for _, seen := range swept {
		where, arg := byOrderID(seen.ID)
		_, refused, err := s.change(ctx, tx, where, arg, func(o *floodgate.PaymentOrder, _ time.Time) (floodgate.Transition, error) {
			return floodgate.ApplySweep(o, seen, start, now)
		})
		switch {
		case errors.Is(err, sql.ErrNoRows):
			continue
		case err != nil:
			return 0, err
		case refused != nil:
			if floodgate.ErrorCode(refused) != floodgate.ESTATE {
				return 0, refused
			}
			continue
		}
		n++
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return n, nil
}

// SweptNewKey implements floodgate.Store.
func (s *Store) SweptNewKey(ctx context.Context, id string, from int, paymentIntentID string, now time.Time) (*floodgate.PaymentOrder, error) {
	where, arg := byOrderID(id)
	return s.moveOrder(ctx, id, where, arg, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplySweptNewKey(o, from, paymentIntentID, now, clock)
	})
}

// TakeLease implements floodgate.Store in one statement on the store's
// clock: the row is inserted, or taken over when its owner is owner or
// its time ran out; RETURNING answers a row only when it was.
func (s *Store) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := s.clock.Now()
	var got string
	err := s.w.QueryRowContext(ctx, `INSERT INTO leases (name, owner, until) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE leases.owner = excluded.owner OR leases.until <= ?
		RETURNING owner`, name, owner, nanos(now.Add(ttl)), nanos(now)).Scan(&got)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ReleaseLease implements floodgate.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	_, err := s.w.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND owner = ?`, name, owner)
	return err
}
