package sqlite_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sqlite"
	"github.com/floodgate/floodgate/internal/storetest"
)

func open(tb testing.TB, clock floodgate.Clock) floodgate.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Options{Path: filepath.Join(tb.TempDir(), "floodgate.db"), ReadConns: 2, Clock: clock})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) { storetest.Run(t, open) }

// TestWriterIsDurable reads the pragmas on the writer connection itself:
// every commit that answers a donor must be fsynced before it returns.
func TestWriterIsDurable(t *testing.T) {
	s := open(t, floodgate.SystemClock{}).(*sqlite.Store)
	defer s.Close()
	ctx := context.Background()
	var sync int
	if err := s.Writer().QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		t.Fatal(err)
	}
	if sync != 2 { // 2 = FULL
		t.Fatalf("PRAGMA synchronous = %d on the writer, want 2 (FULL)", sync)
	}
	var mode string
	if err := s.Writer().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode = %q, want wal", mode)
	}
}

// TestSecondProcessRefused shows the lock: a second Open of the same file
// fails with a message that says why.
func TestSecondProcessRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floodgate.db")
	s, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = sqlite.Open(context.Background(), sqlite.Options{Path: path})
	if err == nil || !strings.Contains(err.Error(), "another floodgate process") {
		t.Fatalf("second Open = %v, want a lock error", err)
	}
	s.Close()
	s2, err := sqlite.Open(context.Background(), sqlite.Options{Path: path})
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	s2.Close()
}

// TestReopenKeepsEverything closes and reopens a store: migrations are not
// applied twice and every row is still there.
func TestReopenKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "floodgate.db")
	ctx := context.Background()
	s, err := sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	c := &floodgate.Campaign{ID: "c", Name: "C", Currency: "eur"}
	c.SetDefaults(storetest.Epoch)
	c.CreatedAt, c.UpdatedAt = storetest.Epoch, storetest.Epoch
	if err := s.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	secret, _ := s.Secret(ctx, "x")
	s.Close()
	s, err = sqlite.Open(ctx, sqlite.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Campaign(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Secret(ctx, "x"); string(again) != string(secret) {
		t.Fatal("secret changed across reopen")
	}
}

func BenchmarkStateChanges(b *testing.B) { storetest.BenchStateChanges(b, open) }
