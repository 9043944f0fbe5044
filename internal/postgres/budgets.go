package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
)

// TakeBudget implements floodgate.Store: the bucket's row is locked (FOR
// UPDATE), so every node's dispatcher draws on one budget and together
// they never exceed its rate.
func (s *Store) TakeBudget(ctx context.Context, r floodgate.BudgetRequest) (floodgate.BudgetGrant, error) {
	r.Now = micro(r.Now)
	var g floodgate.BudgetGrant
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO budgets (name, tokens, rate, updated_at, cut_at)
			VALUES ($1, 0, 0, $2, $2) ON CONFLICT (name) DO NOTHING`, r.Name, time.Time{}); err != nil {
			return err
		}
		var st floodgate.BudgetState
		if err := tx.QueryRow(ctx, `SELECT tokens, rate, updated_at, cut_at FROM budgets WHERE name = $1 FOR UPDATE`, r.Name).
			Scan(&st.Tokens, &st.Rate, &st.UpdatedAt, &st.CutAt); err != nil {
			return err
		}
		if st.Rate == 0 {
			st.UpdatedAt = time.Time{} // a new budget
		}
		var next floodgate.BudgetState
		next, g = st.Take(r)
		_, err := tx.Exec(ctx, `UPDATE budgets SET tokens = $2, rate = $3, updated_at = $4, cut_at = $5 WHERE name = $1`,
			r.Name, next.Tokens, next.Rate, next.UpdatedAt, next.CutAt)
		return err
	})
	return g, err
}
