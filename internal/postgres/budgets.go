package postgres

import (
	"context"
	"errors"
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

// Setting implements floodgate.Store.
func (s *Store) Setting(ctx context.Context, name string) (string, time.Time, error) {
	var (
		v  string
		at time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT value, updated_at FROM settings WHERE name = $1`, name).Scan(&v, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", time.Time{}, floodgate.Errorf(floodgate.ENOTFOUND, "Setting %q was never set.", name)
	}
	return v, at.UTC(), err
}

// SetSetting implements floodgate.Store.
func (s *Store) SetSetting(ctx context.Context, name, value string, now time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO settings (name, value, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, name, value, micro(now))
	return err
}

// BlockFingerprint implements floodgate.Store.
func (s *Store) BlockFingerprint(ctx context.Context, fingerprint string, now, until time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO blocked_fingerprints (fingerprint, blocked_at, until) VALUES ($1, $2, $3)
		ON CONFLICT (fingerprint) DO UPDATE SET blocked_at = excluded.blocked_at,
		until = GREATEST(blocked_fingerprints.until, excluded.until)`, fingerprint, micro(now), micro(until))
	return err
}

// FingerprintBlocked implements floodgate.Store.
func (s *Store) FingerprintBlocked(ctx context.Context, fingerprint string, now time.Time) (bool, error) {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM blocked_fingerprints WHERE fingerprint = $1 AND until > $2`,
		fingerprint, micro(now)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// FingerprintsBlockedSince implements floodgate.Store.
func (s *Store) FingerprintsBlockedSince(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM blocked_fingerprints WHERE blocked_at >= $1`, micro(since)).Scan(&n)
	return n, err
}
