package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/floodgate/floodgate"
)

// TakeBudget implements floodgate.Store. On the embedded store there is
// one node, so the budget is this process's; it is kept in the file all
// the same, so that it behaves as the shared one does.
func (s *Store) TakeBudget(ctx context.Context, r floodgate.BudgetRequest) (floodgate.BudgetGrant, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return floodgate.BudgetGrant{}, err
	}
	defer func() { _ = tx.Rollback() }()
	var (
		st         floodgate.BudgetState
		upd, cutAt int64
	)
	err = tx.QueryRowContext(ctx, `SELECT tokens, rate, updated_at, cut_at FROM budgets WHERE name = ?`, r.Name).
		Scan(&st.Tokens, &st.Rate, &upd, &cutAt)
	switch {
	case err == nil:
		st.UpdatedAt, st.CutAt = fromNanos(upd), fromNanos(cutAt)
	case !errors.Is(err, sql.ErrNoRows):
		return floodgate.BudgetGrant{}, err
	}
	next, g := st.Take(r)
	if _, err := tx.ExecContext(ctx, `INSERT INTO budgets (name, tokens, rate, updated_at, cut_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, rate = excluded.rate,
		updated_at = excluded.updated_at, cut_at = excluded.cut_at`,
		r.Name, next.Tokens, next.Rate, nanos(next.UpdatedAt), nanos(next.CutAt)); err != nil {
		return floodgate.BudgetGrant{}, err
	}
	return g, tx.Commit()
}
