package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/floodgate/floodgate"
)

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
