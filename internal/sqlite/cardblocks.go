package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

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
