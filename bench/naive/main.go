// Command naive is the per-request architecture that collapsed in the
// raffle story: every request decodes its donation and inserts it in a
// transaction of its own, one row per commit, before answering 202. It
// keeps the same durability promise as floodgate (synchronous commits) and
// checks the same idempotency key, so the comparison is of the
// architecture, not of the guarantees.
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite"

	"github.com/floodgate/floodgate/bench/internal/benchsrv"
)

type donation struct {
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	PaymentMethod string `json:"payment_method"`
	Anonymous     bool   `json:"anonymous"`
	Message       string `json:"message"`
}

// inserter stores one donation in its own transaction.
type inserter func(ctx context.Context, id, campaign, key string, d *donation) error

func main() {
	addr := flag.String("addr", "127.0.0.1:18402", "listen address")
	store := flag.String("store", "", "a SQLite file path, or a postgres:// URL")
	flag.Parse()
	var insert inserter
	switch {
	case strings.HasPrefix(*store, "postgres"):
		insert = postgres(*store)
	case *store != "":
		insert = sqlite(*store)
	default:
		log.Fatal("naive: --store is required")
	}
	s := benchsrv.New()
	s.HandleDonation(func(w http.ResponseWriter, r *http.Request) {
		var d donation
		dec := json.NewDecoder(io.LimitReader(r.Body, 16<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil || d.Amount <= 0 || d.Email == "" {
			http.Error(w, `{"type":"validation_failed"}`, http.StatusBadRequest)
			return
		}
		var b [16]byte
		_, _ = rand.Read(b[:])
		id := "don_" + hex.EncodeToString(b[:])
		if err := insert(r.Context(), id, r.PathValue("id"), r.Header.Get("Idempotency-Key"), &d); err != nil {
			log.Printf("insert: %v", err)
			http.Error(w, `{"type":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		s.Accepted()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "accepted"})
	})
	log.Fatal(s.ListenAndServe(*addr))
}

const schema = `CREATE TABLE IF NOT EXISTS naive_donations (id TEXT PRIMARY KEY, campaign TEXT NOT NULL, key TEXT NOT NULL,
	amount BIGINT NOT NULL, currency TEXT NOT NULL, email TEXT NOT NULL, name TEXT NOT NULL, payment_method TEXT NOT NULL,
	message TEXT NOT NULL, created_at BIGINT NOT NULL, UNIQUE (campaign, key))`

func sqlite(path string) inserter {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		log.Fatal(err)
	}
	db.SetMaxOpenConns(1) // SQLite has one writer; more connections only wait on its lock
	if _, err := db.Exec(schema); err != nil {
		log.Fatal(err)
	}
	st, err := db.Prepare(`INSERT INTO naive_donations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		log.Fatal(err)
	}
	return func(ctx context.Context, id, campaign, key string, d *donation) error {
		_, err := st.ExecContext(ctx, id, campaign, key, d.Amount, d.Currency, d.Email, d.Name, d.PaymentMethod, d.Message, time.Now().UnixNano())
		return err
	}
}

func postgres(url string) inserter {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DROP TABLE IF EXISTS naive_donations`); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		log.Fatal(err)
	}
	return func(ctx context.Context, id, campaign, key string, d *donation) error {
		_, err := pool.Exec(ctx, `INSERT INTO naive_donations VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
			id, campaign, key, d.Amount, d.Currency, d.Email, d.Name, d.PaymentMethod, d.Message, time.Now().UnixNano())
		return err
	}
}
