package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

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
