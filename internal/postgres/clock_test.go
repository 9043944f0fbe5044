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
