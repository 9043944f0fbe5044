package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/postgres"
)

// TestLeasesOnTheDatabaseClock: with no lease clock (production), leases
// are granted and judged on PostgreSQL's clock, so nodes whose own clocks
// disagree by hours still agree on who holds an order: a node an hour
// ahead does not take over a ten-minute lease that a node an hour behind
// has just been granted, and a lease that has run out on the database's
// clock is taken over whatever the nodes' clocks say, the stale holder's
// result refused.
func TestLeasesOnTheDatabaseClock(t *testing.T) {
	url, schema := testSchema(t)
	ctx := context.Background()
	open := func(skew time.Duration) *postgres.Store {
		s, err := postgres.Open(ctx, postgres.Options{URL: url, MaxConns: 4, Schema: schema,
			Clock: clocktest.New(time.Now().Add(skew))})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	behind, ahead := open(-time.Hour), open(time.Hour)
	createCampaign(t, behind, "c")
	if _, err := behind.Accept(ctx, []floodgate.Intake{newDonation("c", "a", 100), newDonation("c", "b", 200)}); err != nil {
		t.Fatal(err)
	}
	var dbNow time.Time
	if err := behind.Pool().QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	held, err := behind.ClaimOrders(ctx, "behind", 1, 10*time.Minute)
	if err != nil || len(held) != 1 {
		t.Fatalf("claim = %v, %v", held, err)
	}
	o := held[0]
	// Granted from the database's clock, not the node's an hour behind.
	if o.KeySince.Before(dbNow) || o.LeaseUntil.Sub(*o.KeySince) != 10*time.Minute {
		t.Fatalf("claimed at %v until %v; the database's clock read %v just before", o.KeySince, o.LeaseUntil, dbNow)
	}
	got, err := ahead.ClaimOrders(ctx, "ahead", 5, 10*time.Minute)
	if err != nil || len(got) != 1 || got[0].PaysFor == o.PaysFor {
		t.Fatalf("the node an hour ahead claimed %v, %v; want only the other gift", got, err)
	}
	if n, err := ahead.ExtendClaims(ctx, []floodgate.Claim{o.Claim()}, time.Minute); err != nil || n != 1 {
		t.Fatalf("renewing the live claim from the other node = %d, %v", n, err)
	}

	// A lease that ends before it begins has run out on any clock: the
	// other node takes the order over, and the first holder's result is
	// refused.
	if _, err := behind.Accept(ctx, []floodgate.Intake{newDonation("c", "c", 300)}); err != nil {
		t.Fatal(err)
	}
	lapsed, err := behind.ClaimOrders(ctx, "behind", 1, -time.Second)
	if err != nil || len(lapsed) != 1 {
		t.Fatalf("claim = %v, %v", lapsed, err)
	}
	taken, err := ahead.ClaimOrders(ctx, "ahead", 5, 10*time.Minute)
	if err != nil || len(taken) != 1 || taken[0].ID != lapsed[0].ID || taken[0].Token <= lapsed[0].Token {
		t.Fatalf("takeover = %v, %v; want %s under a newer token", taken, err, lapsed[0].ID)
	}
	_, err = behind.Settle(ctx, floodgate.Settlement{OrderID: lapsed[0].ID, Token: lapsed[0].Token, Status: floodgate.StatusSucceeded})
	if floodgate.ErrorCode(err) != floodgate.ESTATE {
		t.Fatalf("the stale holder's settle: %v, want %s", err, floodgate.ESTATE)
	}
	if o, err := ahead.Order(ctx, lapsed[0].ID); err != nil || o.Status != floodgate.StatusProcessing || o.Token != taken[0].Token {
		t.Fatalf("after the stale settle: %+v, %v", o, err)
	}
}

// TestSweepsOnTheDatabaseClock: with no lease clock (production), an
// order's hand-over to the sweeps is judged, its return to the line is
// granted and the sweeper's lease is held on PostgreSQL's clock: a node an
// hour ahead hands over the order it holds for ten minutes, the order it
// gives a new key is claimed at once by a node an hour behind, and the
// sweeper's lease goes to another node only once it ran out on the
// database's clock.
func TestSweepsOnTheDatabaseClock(t *testing.T) {
	url, schema := testSchema(t)
	ctx := context.Background()
	open := func(skew time.Duration) (*postgres.Store, *clocktest.Manual) {
		clock := clocktest.New(time.Now().Add(skew))
		s, err := postgres.Open(ctx, postgres.Options{URL: url, MaxConns: 4, Schema: schema, Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s, clock
	}
	behind, _ := open(-time.Hour)
	ahead, aheadClock := open(time.Hour)
	createCampaign(t, behind, "c")
	if _, err := behind.Accept(ctx, []floodgate.Intake{newDonation("c", "a", 100)}); err != nil {
		t.Fatal(err)
	}
	held, err := ahead.ClaimOrders(ctx, "ahead", 1, 10*time.Minute)
	if err != nil || len(held) != 1 {
		t.Fatalf("claim = %v, %v", held, err)
	}
	w := floodgate.Window{From: held[0].KeySince.Truncate(time.Second), To: held[0].KeySince.Add(2 * time.Second).Truncate(time.Second)}
	o, err := ahead.MarkUnknown(ctx, held[0].Claim(), w, "server", aheadClock.Now())
	if err != nil || o.UnknownFrom == nil {
		t.Fatalf("the holder an hour ahead hands its order over: %+v, %v", o, err)
	}
	started := w.To.Add(time.Minute)
	for i := range floodgate.AbsenceSweeps {
		if n, err := ahead.RecordSweep(ctx, []floodgate.SweptOrder{{ID: o.ID, Sweeps: i}}, floodgate.SweepStartAt(started.Add(time.Duration(i)*time.Minute)), aheadClock.Now()); err != nil || n != 1 {
			t.Fatalf("sweep %d = %d, %v", i+1, n, err)
		}
	}
	var dbNow time.Time
	if err := ahead.Pool().QueryRow(ctx, `SELECT statement_timestamp()`).Scan(&dbNow); err != nil {
		t.Fatal(err)
	}
	o, err = ahead.SweptNewKey(ctx, o.ID, 0, "", aheadClock.Now())
	if err != nil || o.LeaseUntil == nil || o.LeaseUntil.Before(dbNow) || o.LeaseUntil.After(dbNow.Add(30*time.Minute)) {
		t.Fatalf("a new key from the node an hour ahead: %+v, %v; the database's clock read %v just before", o, err, dbNow)
	}
	got, err := behind.ClaimOrders(ctx, "behind", 5, 10*time.Minute)
	if err != nil || len(got) != 1 || got[0].ID != o.ID || got[0].Attempt != 1 || got[0].KeySince == nil {
		t.Fatalf("the node an hour behind claims %+v, %v; want %s at once, its new key stamped", got, err, o.ID)
	}

	// The sweeper's lease.
	if ok, err := ahead.TakeLease(ctx, "sweeper", "ahead", 10*time.Minute); err != nil || !ok {
		t.Fatalf("the node ahead takes the lease: %v, %v", ok, err)
	}
	if ok, err := behind.TakeLease(ctx, "sweeper", "behind", 10*time.Minute); err != nil || ok {
		t.Fatalf("the node behind takes a held lease: %v, %v", ok, err)
	}
	// A lease that ends before it begins has run out on any clock.
	if ok, err := ahead.TakeLease(ctx, "sweeper", "ahead", -time.Second); err != nil || !ok {
		t.Fatalf("the holder renews: %v, %v", ok, err)
	}
	if ok, err := behind.TakeLease(ctx, "sweeper", "behind", 10*time.Minute); err != nil || !ok {
		t.Fatalf("the node behind takes a lease that ran out: %v, %v", ok, err)
	}
}
