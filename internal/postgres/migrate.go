package postgres

import (
	"context"
	"embed"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/floodgate/floodgate/internal/migration"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// migrationLockKey names the advisory lock that serialises migrations of
// one schema; nodes migrating other schemas of the same database do not
// wait on it.
func migrationLockKey(schema string) string { return "floodgate migrate " + schema }

// migrate creates schema if it is not empty and missing, then applies every
// migration not yet recorded in schema_migrations. Everything happens in
// one transaction that first takes a transaction-scoped advisory lock: when
// several nodes start at once, one migrates and the others wait, then find
// every version recorded and apply nothing. DDL is transactional in
// PostgreSQL, so a crash leaves the schema as it was before.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	ms, err := migration.Load(migrationFS, "migrations")
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, migrationLockKey(schema)); err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		// Objects that exist are not created again, not even with IF NOT
		// EXISTS, which asks for the CREATE privilege first: a role that
		// may only read and write the tables can still start a node.
		if schema != "" {
			ident := pgx.Identifier{schema}.Sanitize()
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				if _, err := tx.Exec(ctx, `CREATE SCHEMA `+ident); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `SET LOCAL search_path TO `+ident); err != nil {
				return err
			}
		}
		var tracked bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&tracked); err != nil {
			return err
		}
		if !tracked {
			if _, err := tx.Exec(ctx, `CREATE TABLE schema_migrations (
				version    integer PRIMARY KEY,
				name       text NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now()
			)`); err != nil {
				return err
			}
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
			return err
		}
		if have > len(ms) {
			return fmt.Errorf("database schema version %d is newer than this binary knows (%d)", have, len(ms))
		}
		for _, m := range ms[have:] {
			// No arguments: pgx sends the file with the simple protocol,
			// which runs several statements.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
				return err
			}
		}
		return nil
	})
}
