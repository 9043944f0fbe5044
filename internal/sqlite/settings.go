package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/floodgate/floodgate"
)

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
