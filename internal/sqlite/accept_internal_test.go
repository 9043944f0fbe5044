package sqlite

import (
	"context"
	"crypto/sha256"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

func openTest(tb testing.TB, path string) *Store {
	tb.Helper()
	s, err := Open(context.Background(), Options{Path: path})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newDonation(key string, amount int64) *floodgate.Donation {
	h := sha256.Sum256([]byte(key + string(rune(amount))))
	return &floodgate.Donation{CampaignID: "c", IdempotencyKey: key, RequestHash: h[:], Amount: amount, Currency: "eur",
		Email: "a@example.org", PaymentMethod: "pm_card_visa"}
}

func createCampaign(tb testing.TB, s *Store) {
	tb.Helper()
	now := time.Now().UTC()
	c := &floodgate.Campaign{ID: "c", Name: "C", Currency: "eur", CreatedAt: now, UpdatedAt: now}
	c.SetDefaults(now)
	if err := s.CreateCampaign(context.Background(), c); err != nil {
		tb.Fatal(err)
	}
}

// TestKeyHashCollision forces every key to the same hash: the index must
// still tell keys apart by their text, in the file and inside one batch,
// and still replay and refuse as it should.
func TestKeyHashCollision(t *testing.T) {
	hashKey = func(string, string) int64 { return 42 }
	defer func() { hashKey = keyHash }()
	s := openTest(t, filepath.Join(t.TempDir(), "f.db"))
	defer s.Close()
	createCampaign(t, s)
	ctx := context.Background()
	first, err := s.Accept(ctx, []floodgate.Intake{newDonation("a", 100), newDonation("b", 200), newDonation("a", 100)})
	if err != nil {
		t.Fatal(err)
	}
	if first[0].Donation().ID == first[1].Donation().ID || first[2].Donation().ID != first[0].Donation().ID || !first[2].Replayed {
		t.Fatalf("one batch with colliding hashes: %+v", first)
	}
	again, err := s.Accept(ctx, []floodgate.Intake{newDonation("b", 200), newDonation("c", 300), newDonation("a", 999)})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Replayed || again[0].Donation().ID != first[1].Donation().ID {
		t.Fatalf("replay of b = %+v", again[0])
	}
	if again[1].Replayed || again[1].Err != nil {
		t.Fatalf("new key c = %+v", again[1])
	}
	if floodgate.ErrorCode(again[2].Err) != floodgate.EIDEMMISMATCH {
		t.Fatalf("a with another body = %+v", again[2])
	}
}

// TestIndexRebuiltOnOpen: after a restart, keys stored before still
// replay, and line numbers continue where they stopped.
func TestIndexRebuiltOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.db")
	s := openTest(t, path)
	createCampaign(t, s)
	ctx := context.Background()
	res, err := s.Accept(ctx, []floodgate.Intake{newDonation("k1", 100), newDonation("k2", 200)})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, path)
	defer s.Close()
	again, err := s.Accept(ctx, []floodgate.Intake{newDonation("k2", 200), newDonation("k3", 300)})
	if err != nil {
		t.Fatal(err)
	}
	if !again[0].Replayed || again[0].Donation().ID != res[1].Donation().ID {
		t.Fatalf("replay after reopen = %+v", again[0])
	}
	if again[1].Donation().Seq != res[1].Donation().Seq+1 {
		t.Fatalf("seq after reopen = %d, want %d", again[1].Donation().Seq, res[1].Donation().Seq+1)
	}
}

// TestFailedCommitLeavesIndexAlone: a batch that fails to commit teaches
// the index nothing, so the same key is accepted when space returns.
func TestFailedCommitLeavesIndexAlone(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "f.db"))
	defer s.Close()
	createCampaign(t, s)
	ctx := context.Background()
	if _, err := s.w.Exec(`PRAGMA query_only = 1`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Accept(ctx, []floodgate.Intake{newDonation("k", 100)}); err == nil {
		t.Fatal("accept on a read-only connection succeeded")
	}
	if _, err := s.w.Exec(`PRAGMA query_only = 0`); err != nil {
		t.Fatal(err)
	}
	res, err := s.Accept(ctx, []floodgate.Intake{newDonation("k", 100)})
	if err != nil || res[0].Replayed || res[0].Donation() == nil || res[0].Donation().Seq != 1 {
		t.Fatalf("after the failure: %+v, %v", res, err)
	}
}

// BenchmarkAcceptDonations is the store's part of the accept path: one
// transaction (fsync included) per batch of 256.
func BenchmarkAcceptDonations(b *testing.B) {
	s := openTest(b, filepath.Join(b.TempDir(), "f.db"))
	defer s.Close()
	createCampaign(b, s)
	ctx := context.Background()
	batch := make([]floodgate.Intake, 256)
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for i := range batch {
			n++
			batch[i] = newDonation("bench-"+strconv.Itoa(n), 2500)
		}
		if _, err := s.Accept(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "rows/s")
}
