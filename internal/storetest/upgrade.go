package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/dispatch"
	"github.com/floodgate/floodgate/internal/sandbox"
	"github.com/floodgate/floodgate/internal/startstop"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

// LegacyDonation is a donation as a store kept it before payment orders
// (schema version 3): every field of the donation as one row, Seq
// included, and its history.
type LegacyDonation struct {
	*floodgate.Donation
	History []floodgate.StatusChange
}

// LegacyStore builds, with the engine's own SQL, a database at schema
// version 3 (the migrations before payment orders) holding campaign c,
// its totals t and the donations ds, each with every column as given and
// its history, assigning each donation's Seq in the order given; it may
// then apply the engine's later migrations up to an older version than
// this code's (4: payment orders, before unknown outcomes). It then opens
// that database with this code, which migrates it the rest of the way,
// and returns the store (closed when tb ends). clock is the store's clock.
type LegacyStore func(tb testing.TB, clock floodgate.Clock, c *floodgate.Campaign, t floodgate.Totals, ds []LegacyDonation) floodgate.Store

// Legacy gifts by the state they stand in; RunUpgrade holds each to what
// its order and its next charge must be.
const (
	legacyWaiting      = "waiting"
	legacyRetrying     = "retrying"
	legacyLeased       = "leased"
	legacyOrphan       = "orphan"
	legacyDeferred     = "deferred"
	legacyAction       = "action"
	legacySucceeded    = "succeeded"
	legacyFailed       = "failed"
	legacyRefunded     = "refunded"
	legacyDisputed     = "disputed"
	legacyCanceled     = "canceled"
	legacyActionExpiry = "expired"
)

// legacyGifts returns a gift in every state a donation could stand in
// before payment orders, named by its state, with the totals they make,
// around now.
func legacyGifts(campaign string, now time.Time) ([]string, []LegacyDonation, floodgate.Totals) {
	at := func(d time.Duration) *time.Time { t := now.Add(d); return &t }
	next := json.RawMessage(`{"type":"use_stripe_sdk","use_stripe_sdk":{"type":"three_d_secure_redirect","stripe_js":"https://hooks.stripe.com/3d"}}`)
	type gift struct {
		name   string
		amount int64
		edit   func(d *floodgate.Donation)
		lines  []floodgate.DonationStatus
	}
	processing := []floodgate.DonationStatus{floodgate.StatusAccepted, floodgate.StatusProcessing}
	gifts := []gift{
		{legacyWaiting, 1100, func(d *floodgate.Donation) {}, []floodgate.DonationStatus{floodgate.StatusAccepted}},
		{legacyRetrying, 1200, func(d *floodgate.Donation) {
			// Its PaymentIntent, declined at generation 0, is made before
			// the upgrade (RunUpgrade).
			d.Attempt, d.PaymentMethod = 1, "pm_card_mastercard"
		}, []floodgate.DonationStatus{floodgate.StatusAccepted, floodgate.StatusProcessing, floodgate.StatusFailed, floodgate.StatusAccepted}},
		{legacyLeased, 1300, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.ClaimedBy, d.LeaseUntil = floodgate.StatusProcessing, at(-time.Minute), "old-node", at(time.Hour)
		}, processing},
		{legacyOrphan, 1400, func(d *floodgate.Donation) {
			d.Status, d.Attempt, d.KeySince, d.ClaimedBy, d.LeaseUntil = floodgate.StatusProcessing, 2, at(-10*time.Minute), "dead-node", at(-5*time.Minute)
		}, processing},
		{legacyDeferred, 1500, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.LeaseUntil = floodgate.StatusProcessing, at(-3*time.Minute), at(time.Hour)
		}, processing},
		{legacyAction, 1600, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID, d.ClientSecret = floodgate.StatusRequiresAction, at(-4*time.Minute), "pi_legacy_action", "pi_legacy_action_secret_x"
			d.NextAction, d.ActionSince = next, at(-3*time.Minute)
		}, append(processing, floodgate.StatusRequiresAction)},
		{legacySucceeded, 1700, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID = floodgate.StatusSucceeded, at(-9*time.Minute), "pi_legacy_succeeded"
		}, append(processing, floodgate.StatusSucceeded)},
		{legacyFailed, 1800, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID, d.FailureCode = floodgate.StatusFailed, at(-9*time.Minute), "pi_legacy_failed", "card_declined"
		}, append(processing, floodgate.StatusFailed)},
		{legacyRefunded, 1900, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID, d.Refunded = floodgate.StatusSucceeded, at(-9*time.Minute), "pi_legacy_refunded", 400
		}, append(processing, floodgate.StatusSucceeded, floodgate.StatusSucceeded)},
		{legacyDisputed, 2000, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID, d.Disputed = floodgate.StatusSucceeded, at(-9*time.Minute), "pi_legacy_disputed", 2000
		}, append(processing, floodgate.StatusSucceeded, floodgate.StatusSucceeded)},
		{legacyCanceled, 2100, func(d *floodgate.Donation) { d.Status = floodgate.StatusCanceled },
			[]floodgate.DonationStatus{floodgate.StatusAccepted, floodgate.StatusCanceled}},
		{legacyActionExpiry, 2200, func(d *floodgate.Donation) {
			d.Status, d.KeySince, d.PaymentIntentID, d.ClientSecret = floodgate.StatusCanceled, at(-50*time.Minute), "pi_legacy_expired", "pi_legacy_expired_secret_y"
			d.ActionSince = at(-40 * time.Minute)
		}, append(processing, floodgate.StatusRequiresAction, floodgate.StatusCanceled)},
	}
	var (
		names []string
		out   []LegacyDonation
		sum   floodgate.TotalsDelta
	)
	for i, g := range gifts {
		key := "legacy-" + g.name
		h := sha256.Sum256([]byte(key))
		created := now.Add(-time.Hour + time.Duration(i)*time.Second)
		d := &floodgate.Donation{ID: floodgate.NewID(floodgate.DonationIDPrefix), CampaignID: campaign, IdempotencyKey: key,
			RequestHash: h[:], Amount: g.amount, Currency: "eur", Email: g.name + "@example.org", Name: "Donor " + g.name,
			PaymentMethod: "pm_card_visa", Message: "Go on, " + g.name, ClientAddr: fmt.Sprintf("192.0.2.%d", i+1),
			Status: floodgate.StatusAccepted, CreatedAt: created, UpdatedAt: created.Add(time.Minute),
			Declaration: &floodgate.Declaration{Scheme: floodgate.SchemeIE, TextVersion: "2026-01", FirstName: "A", LastName: g.name}}
		if i%3 == 0 {
			d.Declaration, d.Anonymous = nil, true
		}
		g.edit(d)
		var hist []floodgate.StatusChange
		for n, s := range g.lines {
			c := floodgate.StatusChange{Status: s, At: created.Add(time.Duration(n) * time.Second)}
			if s == floodgate.StatusFailed {
				c.FailureCode = "card_declined"
			}
			if n == len(g.lines)-1 && n > 0 && g.lines[n-1] == s {
				c.Note = "refund: 400 in all"
				if d.Disputed > 0 {
					c.Note = "dispute: 2000 in all"
				}
			}
			hist = append(hist, c)
		}
		names = append(names, g.name)
		out = append(out, LegacyDonation{Donation: d, History: hist})
		sum.Add(totalsOf(d))
	}
	return names, out, floodgate.Totals{Campaign: campaign, Currency: "eur", Raised: sum.Raised, Donations: sum.Donations,
		Pending: sum.Pending, PendingCount: sum.PendingCount, Waiting: sum.Waiting, UpdatedAt: now.Add(-time.Minute)}
}

// totalsOf is what d counts in its campaign's totals.
func totalsOf(d *floodgate.Donation) floodgate.TotalsDelta {
	t := floodgate.Delta("", d.Status, d.Amount)
	if d.Status == floodgate.StatusSucceeded {
		t.Raised = d.Net()
	}
	return t
}

// RunUpgrade holds a store migrated from an older schema to what it
// held: every donation, in every state, reads back as it was, with its
// history and its campaign's totals; each has a payment order that keeps
// its place in line, its key generation and the request format of then,
// so that the charge a dispatcher sends for it is the very request it
// first sent, and whose outcome is not unknown (no order is the sweeps'
// until a dispatcher hands it to them); and the store and a dispatcher
// carry on: a gift whose
// dispatcher died mid-charge before the upgrade resumes under its old key
// and settles with the payment that key made, the provider answering a
// replay, never an idempotency error. single says the store is one
// process's (its dispatcher takes every claim back at start-up).
func RunUpgrade(t *testing.T, build LegacyStore, single bool) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	c := &floodgate.Campaign{ID: "legacy", Name: "Legacy appeal", Currency: "eur", TaxSchemes: []string{floodgate.SchemeIE},
		CreatedAt: now.Add(-2 * time.Hour), UpdatedAt: now.Add(-2 * time.Hour)}
	c.SetDefaults(c.CreatedAt)
	names, legacy, totals := legacyGifts(c.ID, now)
	byName := map[string]*floodgate.Donation{}
	for i, n := range names {
		byName[n] = legacy[i].Donation
	}

	// The dispatcher that died had sent its gift's charge, under the key
	// of its generation, as the release before payment orders made it.
	sb, err := sandbox.New(sandbox.Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { srv.Close(); _ = sb.Close() })
	provider, err := fgstripe.New(fgstripe.Options{SecretKey: "sk_test_upgrade", APIBase: srv.URL, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	orphan := byName[legacyOrphan]
	before, err := provider.Charge(ctx, oldRequest(orphan))
	if err != nil || before.Status != floodgate.PaymentSucceeded {
		t.Fatalf("the charge sent before the upgrade: %+v, %v", before, err)
	}
	// The gift waiting with another card was declined, before the
	// upgrade, at its first key generation: its PaymentIntent is confirmed
	// again after it.
	retrying := byName[legacyRetrying]
	first := *retrying
	first.Attempt, first.PaymentIntentID, first.PaymentMethod = 0, "", "pm_card_chargeDeclined"
	_, err = provider.Charge(ctx, oldRequest(&first))
	var pe *floodgate.ProviderError
	if !errors.As(err, &pe) || pe.Payment == nil {
		t.Fatalf("the declined charge before the upgrade: %v", err)
	}
	retrying.PaymentIntentID = pe.Payment.ID

	s := build(t, floodgate.SystemClock{}, c, totals, legacy)

	// Everything reads back as it was.
	for _, l := range legacy {
		want := *l.Donation
		got, err := s.Donation(ctx, want.ID)
		if err != nil {
			t.Fatalf("Donation(%s): %v", want.ID, err)
		}
		if got.OrderID != floodgate.OrderIDOf(want.ID) {
			t.Fatalf("donation %s has order %q", want.ID, got.OrderID)
		}
		want.OrderID = got.OrderID
		if g, w := normalizedDonation(got), normalizedDonation(&want); !reflect.DeepEqual(g, w) {
			t.Fatalf("donation after the upgrade\n%+v\nbefore\n%+v", g, w)
		}
		h, err := s.History(ctx, want.ID)
		if err != nil || !sameHistory(h, l.History) {
			t.Fatalf("history of %s after the upgrade %+v (%v), before %+v", want.ID, h, err, l.History)
		}
		if by, err := s.DonationByKey(ctx, c.ID, want.IdempotencyKey); err != nil || by.ID != want.ID {
			t.Fatalf("a replay of %s's key after the upgrade: %+v, %v", want.ID, by, err)
		}
		// Its order: the payment as it stood, in the request format of
		// then.
		o, err := s.Order(ctx, got.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		if o.Kind != floodgate.KindDonation || o.PaysFor != want.ID || o.Seq != want.Seq || o.CampaignID != c.ID ||
			o.Amount != want.Amount || o.Currency != want.Currency || o.ClientAddr != want.ClientAddr ||
			o.Format != floodgate.FormatDonation || o.Token != 0 || !o.CreatedAt.Equal(want.CreatedAt) ||
			o.UnknownFrom != nil || o.UnknownTo != nil || o.Sweeps != 0 || o.SweptAt != nil {
			t.Fatalf("order of %s = %+v", want.ID, o)
		}
		if want.PaymentIntentID != "" {
			if by, err := s.OrderByPaymentIntent(ctx, want.PaymentIntentID); err != nil || by.ID != o.ID {
				t.Fatalf("OrderByPaymentIntent(%s) = %+v, %v", want.PaymentIntentID, by, err)
			}
		}
		if got, want := o.ChargeRequest(), oldRequest(&want); !reflect.DeepEqual(got, want) {
			t.Fatalf("the charge of %s after the upgrade\n%+v\nbefore\n%+v", want.IdempotencyKey, got, want)
		}
	}
	tot, err := s.Totals(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Raised != totals.Raised || tot.Donations != totals.Donations || tot.Pending != totals.Pending ||
		tot.PendingCount != totals.PendingCount || tot.Waiting != totals.Waiting {
		t.Fatalf("totals after the upgrade %+v, before %+v", tot, totals)
	}
	b, err := s.Backlog(ctx)
	if err != nil || b.Waiting != 2 || b.HeadSeq != byName[legacyWaiting].Seq {
		t.Fatalf("Backlog after the upgrade = %+v, %v", b, err)
	}
	if u, err := s.Unknowns(ctx, 100); err != nil || len(u) != 0 {
		t.Fatalf("Unknowns after the upgrade = %v, %v; want none", ids(u), err)
	}
	if ok, err := s.TakeLease(ctx, "sweeper", "upgraded", time.Minute); err != nil || !ok {
		t.Fatalf("the first lease after the upgrade = %v, %v", ok, err)
	}
	if err := s.ReleaseLease(ctx, "sweeper", "upgraded"); err != nil {
		t.Fatal(err)
	}

	// New gifts take their places after the old ones.
	fresh := &floodgate.Donation{CampaignID: c.ID, IdempotencyKey: "after-upgrade", RequestHash: []byte("after"), Amount: 900,
		Currency: "eur", Email: "new@example.org", PaymentMethod: "pm_card_visa", ClientAddr: "192.0.2.99"}
	res, err := s.Accept(ctx, []floodgate.Intake{fresh})
	if err != nil || res[0].Err != nil || res[0].Donation().Seq <= legacy[len(legacy)-1].Seq {
		t.Fatalf("a gift accepted after the upgrade: %+v, %v", res, err)
	}
	after := res[0].Donation()

	// A dispatcher carries on, with every service of the dispatch package
	// wired as serve wires them.
	control := dispatch.NewControl(s, dispatch.ControlOptions{})
	link := dispatch.NewLink(s, provider, control, dispatch.LinkOptions{Rate: 100, GlobalRate: 200, CallTimeout: 10 * time.Second})
	settler := dispatch.NewSettler(s, dispatch.SettlerOptions{})
	rec := dispatch.NewReconciler(s, link, dispatch.ReconcilerOptions{})
	sweeper := dispatch.NewSweeper(s, link, settler, dispatch.SweeperOptions{Owner: "upgrade-test", Every: 100 * time.Millisecond})
	d := dispatch.New(s, dispatch.Parts{Link: link, Settler: settler, Reconciler: rec}, dispatch.Options{Workers: 4, Queue: 16,
		Claim: 8, Lease: time.Minute, ReleaseAllOnStart: single, Poll: 10 * time.Millisecond, DeferWait: 100 * time.Millisecond})
	g := startstop.NewGroup(control, link, rec, sweeper, d)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	d.Wake()
	waitFor := func(id string, status floodgate.DonationStatus) *floodgate.Donation {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			got, err := s.Donation(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status == status {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("donation %s is %s after two minutes, want %s", id, got.Status, status)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	resumed := waitFor(orphan.ID, floodgate.StatusSucceeded)
	if resumed.PaymentIntentID != before.ID || resumed.Attempt != orphan.Attempt {
		t.Fatalf("the gift resumed after the upgrade = %+v; want it settled by %s, made before, at generation %d",
			resumed, before.ID, orphan.Attempt)
	}
	for _, id := range []string{byName[legacyWaiting].ID, after.ID} {
		waitFor(id, floodgate.StatusSucceeded)
	}
	if got := waitFor(retrying.ID, floodgate.StatusSucceeded); got.PaymentIntentID != retrying.PaymentIntentID {
		t.Fatalf("the gift retried after the upgrade = %+v, want its PaymentIntent %s confirmed again", got, retrying.PaymentIntentID)
	}
	g.Stop()
	l := sb.Ledger()
	if pis := l.ByDonation[orphan.ID]; len(pis) != 1 || pis[0] != before.ID {
		t.Fatalf("PaymentIntents of the resumed gift: %v, want only %s", pis, before.ID)
	}
	if l.Counts.IdempotencyErrors != 0 || l.Counts.Replays == 0 || len(l.ChargedTwice) != 0 {
		t.Fatalf("provider counts %+v (charged twice %v): want a replay of the old key and no idempotency error",
			l.Counts, l.ChargedTwice)
	}
	hist, err := s.History(ctx, orphan.ID)
	if err != nil {
		t.Fatal(err)
	}
	if last := hist[len(hist)-1]; last.Status != floodgate.StatusSucceeded {
		t.Fatalf("history of the resumed gift: %+v", hist)
	}
	// The totals still agree with the gifts.
	tot, err = s.Totals(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var sum floodgate.TotalsDelta
	for _, l := range append(slices.Clone(legacy), LegacyDonation{Donation: after}) {
		got, err := s.Donation(ctx, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		sum.Add(totalsOf(got))
	}
	if tot.Raised != sum.Raised || tot.Donations != sum.Donations || tot.Pending != sum.Pending ||
		tot.PendingCount != sum.PendingCount || tot.Waiting != sum.Waiting {
		t.Fatalf("totals %+v, the gifts add up to %+v", tot, sum)
	}
}

// oldRequest is the charge the dispatcher of the release before payment
// orders made for d at its key generation, spelled out as it did.
func oldRequest(d *floodgate.Donation) floodgate.ChargeRequest {
	return floodgate.ChargeRequest{PaymentIntentID: d.PaymentIntentID, Amount: d.Amount, Currency: d.Currency,
		PaymentMethod: d.PaymentMethod, IdempotencyKey: fmt.Sprintf("floodgate-%s-%d", d.ID, d.Attempt),
		Description: "Donation " + d.ID + " to " + d.CampaignID,
		Metadata:    map[string]string{"campaign": d.CampaignID, "donation_id": d.ID}}
}

func sameHistory(a, b []floodgate.StatusChange) bool {
	return slices.EqualFunc(a, b, func(x, y floodgate.StatusChange) bool {
		return x.Status == y.Status && x.At.Equal(y.At) && x.FailureCode == y.FailureCode && x.Note == y.Note
	})
}
