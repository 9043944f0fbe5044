package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"github.com/floodgate/floodgate/internal/migration"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate applies every migration newer than the database's user_version,
// each in its own transaction with the version bump, so a crash leaves the
// schema at a whole step.
func migrate(ctx context.Context, db *sql.DB) error {
	ms, err := migration.Load(migrationFS, "migrations")
	if err != nil {
		return err
	}
	var have int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return err
	}
	if have > len(ms) {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", have, len(ms))
	}
	for _, m := range ms[have:] {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.Version)); err != nil {
			_ = tx.Rollback()
			return err
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %s: %w", m.Name, err)
		}
	}
	return nil
}
