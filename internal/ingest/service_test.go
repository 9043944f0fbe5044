package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/sqlite"
)

// newService returns a Service over a fresh SQLite store holding the
// campaign demo (testCampaign), open from an hour before now, the service's
// clock at now.
func newService(tb testing.TB, guard *Guard) (*Service, floodgate.Store, *clocktest.Manual) {
	tb.Helper()
	ctx := context.Background()
	clock := clocktest.New(now)
	store, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(tb.TempDir(), "f.db"), Clock: clock})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = store.Close() })
	c := testCampaign()
	c.CreatedAt, c.UpdatedAt = now, now
	if err := store.CreateCampaign(ctx, c); err != nil {
		tb.Fatal(err)
	}
	// The manual clock times the campaign cache and the limits; a batch
	// still closes on real time, or no Donate would return.
	s, err := New(ctx, store, Options{Clock: clock, Guard: guard,
		Batch: BatcherOptions{MaxBatch: 256, MaxWait: time.Millisecond, Queue: 4096, Clock: floodgate.SystemClock{}}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s, store, clock
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := floodgate.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

// TestDonate walks the accept path's answers: a new gift, a replay, a
// mismatch, and the replays that still answer when a new gift is refused
// (the campaign closed, a limit reached).
func TestDonate(t *testing.T) {
	ctx := context.Background()
	var refusals []string
	guard := NewGuard(GuardOptions{PerEmail: 2, Clock: clocktest.New(now)})
	s, store, clock := newService(t, guard)
	s.refused = func(reason string) { refusals = append(refusals, reason) }

	_, err := s.Donate(ctx, "demo", "", []byte(good), "192.0.2.1")
	wantCode(t, err, floodgate.EINVALID)
	_, err = s.Donate(ctx, "nope", "k1", []byte(good), "192.0.2.1")
	wantCode(t, err, floodgate.ENOTFOUND)
	_, err = s.Donate(ctx, "demo", "k1", []byte(with("amount", "1")), "192.0.2.1")
	wantCode(t, err, floodgate.EINVALID)

	first, err := s.Donate(ctx, "demo", "k1", []byte(good), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	d := first.Item
	if first.Replayed || d.Status != floodgate.StatusAccepted || d.IdempotencyKey != "k1" ||
		d.ClientAddr != "192.0.2.1" || d.Amount != 2500 || !s.Tokens().Valid(d.ID, first.Token) {
		t.Fatalf("first = %+v (%+v)", first, d)
	}
	if got, err := store.Donation(ctx, d.ID); err != nil || got.IdempotencyKey != "k1" || got.ClientAddr != "192.0.2.1" {
		t.Fatalf("stored = %+v, %v", got, err)
	}

	// The same body again (spaced differently): the same donation and token.
	again, err := s.Donate(ctx, "demo", "k1", []byte(" "+good+"\n"), "198.51.100.7")
	if err != nil || !again.Replayed || again.Item.ID != d.ID || again.Token != first.Token {
		t.Fatalf("replay = %+v, %v", again, err)
	}
	_, err = s.Donate(ctx, "demo", "k1", []byte(with("amount", "2600")), "192.0.2.1")
	wantCode(t, err, floodgate.EIDEMMISMATCH)

	// aoife@example.ie has made two attempts this hour (the first gift and
	// its replay): a new gift is limited, a retry of the kept one is not.
	_, err = s.Donate(ctx, "demo", "k2", []byte(good), "192.0.2.1")
	wantCode(t, err, floodgate.ERATELIMITED)
	if len(refusals) != 1 || refusals[0] != LimitEmail {
		t.Fatalf("refusals = %v", refusals)
	}
	if a, err := s.Donate(ctx, "demo", "k1", []byte(good), "192.0.2.1"); err != nil || !a.Replayed || a.Item.ID != d.ID {
		t.Fatalf("replay past the limit = %+v, %v", a, err)
	}
	_, err = s.Donate(ctx, "demo", "k1", []byte(with("amount", "2600")), "192.0.2.1")
	wantCode(t, err, floodgate.EIDEMMISMATCH)
	if len(refusals) != 1 {
		t.Fatalf("a replay was counted as a refusal: %v", refusals)
	}

	// Closed: a kept key still answers its donation; a new one is refused.
	closes := now.Add(time.Minute)
	c, err := store.UpdateCampaign(ctx, "demo", floodgate.CampaignUpdate{ClosesAt: &closes}, now)
	if err != nil {
		t.Fatal(err)
	}
	s.Remember(c)
	clock.Advance(2 * time.Minute)
	if a, err := s.Donate(ctx, "demo", "k1", []byte(good), "192.0.2.1"); err != nil || !a.Replayed || a.Item.ID != d.ID {
		t.Fatalf("replay after closing = %+v, %v", a, err)
	}
	_, err = s.Donate(ctx, "demo", "k1", []byte(with("amount", "2600")), "192.0.2.1")
	wantCode(t, err, floodgate.EIDEMMISMATCH)
	_, err = s.Donate(ctx, "demo", "k3", []byte(with("email", `"other@example.ie"`)), "192.0.2.1")
	wantCode(t, err, floodgate.ECAMPAIGNCLOSED)

	tot, err := store.Totals(ctx, "demo")
	if err != nil || tot.PendingCount != 1 || tot.Pending != 2500 {
		t.Fatalf("totals = %+v, %v; want the one gift", tot, err)
	}
}

// BenchmarkDonate is the accept path below HTTP: decoding, validation, the
// limits, the batcher and a SQLite group commit with fsync, from 256
// callers, each gift with its own key, email and address.
func BenchmarkDonate(b *testing.B) {
	guard := NewGuard(GuardOptions{PerEmail: 10, SuspectAttempts: 10, DeclineLimit: 10, Tracked: 1 << 20})
	s, _, _ := newService(b, guard)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			body := fmt.Appendf(nil, `{"amount": 2500, "currency": "eur", "email": "donor%d@example.org", "name": "Donor", "payment_method": "pm_card_visa", "message": "Go on!"}`, i)
			addr := fmt.Sprintf("10.%d.%d.%d", byte(i>>16), byte(i>>8), byte(i))
			a, err := s.Donate(ctx, "demo", "bench-"+strconv.FormatInt(i, 10), body, addr)
			if err != nil {
				b.Fatal(err)
			}
			if a.Replayed {
				b.Fatal("a new key was replayed")
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "donations/s")
}

// TestHolders: a holder read from the store is trusted for the TTL, read
// again after it, and one remembered here is served at once; a failed
// read is not cached.
func TestHolders(t *testing.T) {
	ctx := context.Background()
	clock := clocktest.New(now)
	var reads int
	version := "v1"
	h := newHolders(clock, time.Second, func(_ context.Context, id string) (string, error) {
		reads++
		if id == "nope" {
			return "", floodgate.Errorf(floodgate.ENOTFOUND, "no %s", id)
		}
		return id + "@" + version, nil
	})
	get := func(id, want string, wantReads int) {
		t.Helper()
		got, err := h.get(ctx, id)
		if err != nil || got != want || reads != wantReads {
			t.Fatalf("get(%s) = %q, %v after %d reads; want %q after %d", id, got, err, reads, want, wantReads)
		}
	}
	get("c", "c@v1", 1)
	version = "v2"
	clock.Advance(999 * time.Millisecond)
	get("c", "c@v1", 1)
	clock.Advance(time.Millisecond)
	get("c", "c@v2", 2)
	h.remember("c", "c@here")
	get("c", "c@here", 2)
	for range 2 {
		if _, err := h.get(ctx, "nope"); floodgate.ErrorCode(err) != floodgate.ENOTFOUND {
			t.Fatalf("get(nope) = %v", err)
		}
	}
	if reads != 4 {
		t.Fatalf("%d reads; a failed read was cached", reads)
	}
}
