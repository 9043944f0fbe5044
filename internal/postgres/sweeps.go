package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
)

// MarkUnknown implements floodgate.Store: the claim is judged on the
// database's clock, as every write made under a claim is.
func (s *Store) MarkUnknown(ctx context.Context, c floodgate.Claim, w floodgate.Window, cause string, now time.Time) (*floodgate.PaymentOrder, error) {
	now, w = micro(now), floodgate.Window{From: micro(w.From), To: micro(w.To)}
	return s.moveOrder(ctx, c.Order, `o.seq = $1`, c.Seq, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyUnknown(o, c.Token, w, cause, now, clock)
	})
}

// Unknowns implements floodgate.Store from the index of unknown orders.
func (s *Store) Unknowns(ctx context.Context, n int) ([]*floodgate.PaymentOrder, error) {
	if n <= 0 {
		return nil, nil
	}
	return collectOrders(s.pool.Query(ctx, `SELECT `+orderCols+orderFrom+`
		WHERE o.unknown_from IS NOT NULL ORDER BY o.unknown_from, o.seq LIMIT $1`, n))
}

// RecordSweep implements floodgate.Store in two round trips: the orders
// are locked together, in line order (so two sweeps recorded at once never
// wait on each other in a cycle), each is decided as it now is, and every
// change is written in one batch. One that is gone, or changed since the
// sweep saw it (ApplySweep's ESTATE), is skipped.
func (s *Store) RecordSweep(ctx context.Context, swept []floodgate.SweptOrder, start floodgate.SweepStart, now time.Time) (int, error) {
	if len(swept) == 0 {
		return 0, nil
	}
	start.Earliest, start.Latest, now = micro(start.Earliest), micro(start.Latest), micro(now)
	paysFor := make([]string, len(swept))
	for i, seen := range swept {
		paysFor[i] = floodgate.PaysForOf(floodgate.KindDonation, seen.ID)
	}
	var n int
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		n = 0
		locked, err := collectOrders(tx.Query(ctx, `SELECT `+orderCols+orderFrom+` WHERE d.id = ANY($1)
			ORDER BY o.seq FOR UPDATE OF o`, paysFor))
		if err != nil {
			return err
		}
		byID := make(map[string]*floodgate.PaymentOrder, len(locked))
		for _, o := range locked {
			byID[o.ID] = o
		}
		b := &pgx.Batch{}
		for _, seen := range swept {
			o := byID[seen.ID]
			if o == nil {
				continue
			}
			t, refused := floodgate.ApplySweep(o, seen, start, now)
			if refused != nil {
				if floodgate.ErrorCode(refused) != floodgate.ESTATE {
					return refused
				}
				continue
			}
			if err := queueWrite(b, o, t, func(*floodgate.PaymentOrder) {}); err != nil {
				return err
			}
			// The same order named twice is decided the second time as
			// the first left it.
			byID[seen.ID] = t.Order
			n++
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// SweptNewKey implements floodgate.Store: the order's lease ends at the
// database's clock, so that any node claims it at once.
func (s *Store) SweptNewKey(ctx context.Context, id string, from int, paymentIntentID string, now time.Time) (*floodgate.PaymentOrder, error) {
	now = micro(now)
	where, arg := byOrderID(id)
	return s.moveOrder(ctx, id, where, arg, func(o *floodgate.PaymentOrder, clock time.Time) (floodgate.Transition, error) {
		return floodgate.ApplySweptNewKey(o, from, paymentIntentID, now, clock)
	})
}

// TakeLease implements floodgate.Store in one statement on the database's
// clock: the row is inserted, or taken over when its owner is owner or its
// time ran out (ON CONFLICT DO UPDATE waits for a concurrent taker to
// commit and judges the row as that left it), and RETURNING answers a row
// only when it was. No lock outlives the statement.
func (s *Store) TakeLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases (name, owner, until) VALUES ($1, $2, `+dbNow(4)+` + `+interval(3)+`)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
		WHERE leases.owner = excluded.owner OR leases.until <= `+dbNow(4)+`
		RETURNING owner`, name, owner, ttl.Microseconds(), s.clockArg()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// ReleaseLease implements floodgate.Store.
func (s *Store) ReleaseLease(ctx context.Context, name, owner string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND owner = $2`, name, owner)
	return err
}
