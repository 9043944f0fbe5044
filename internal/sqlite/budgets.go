package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

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

// Setting implements floodgate.Store.
func (s *Store) Setting(ctx context.Context, name string) (string, time.Time, error) {
	var (
		v  string
		at int64
	)
	err := s.r.QueryRowContext(ctx, `SELECT value, updated_at FROM settings WHERE name = ?`, name).Scan(&v, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, floodgate.Errorf(floodgate.ENOTFOUND, "Setting %q was never set.", name)
	}
	return v, fromNanos(at), err
}

// SetSetting implements floodgate.Store.
func (s *Store) SetSetting(ctx context.Context, name, value string, now time.Time) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`, name, value, nanos(now))
	return err
}

// BlockFingerprint implements floodgate.Store.
func (s *Store) BlockFingerprint(ctx context.Context, fingerprint string, now, until time.Time) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO blocked_fingerprints (fingerprint, blocked_at, until) VALUES (?, ?, ?)
		ON CONFLICT (fingerprint) DO UPDATE SET blocked_at = excluded.blocked_at, until = MAX(until, excluded.until)`,
		fingerprint, nanos(now), nanos(until))
	return err
}

// FingerprintBlocked implements floodgate.Store.
func (s *Store) FingerprintBlocked(ctx context.Context, fingerprint string, now time.Time) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM blocked_fingerprints WHERE fingerprint = ? AND until > ?`,
		fingerprint, nanos(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// FingerprintsBlockedSince implements floodgate.Store.
func (s *Store) FingerprintsBlockedSince(ctx context.Context, since time.Time) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM blocked_fingerprints WHERE blocked_at >= ?`, nanos(since)).Scan(&n)
	return n, err
}
