// Package storetest is the one suite every floodgate.Store must pass, so
// that SQLite and PostgreSQL are proven to behave the same.
package storetest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
)

// Opener returns a fresh, empty store whose accept stamps come from clock.
// The suite closes it.
type Opener func(tb testing.TB, clock floodgate.Clock) floodgate.Store

// Epoch is where the suite's clock starts.
var Epoch = time.Date(2026, 12, 4, 20, 0, 0, 0, time.UTC)

type fixture struct {
	tb    testing.TB
	ctx   context.Context
	store floodgate.Store
	clock *clocktest.Manual
	n     int
}

func newFixture(t testing.TB, open Opener) *fixture {
	t.Helper()
	clock := clocktest.New(Epoch)
	s := open(t, clock)
	t.Cleanup(func() { _ = s.Close() })
	return &fixture{tb: t, ctx: context.Background(), store: s, clock: clock}
}

func (f *fixture) campaign(id string) *floodgate.Campaign {
	f.tb.Helper()
	c := &floodgate.Campaign{ID: id, Name: "Campaign " + id, Currency: "eur", Goal: 1_000_000,
		SuggestedAmounts: []int64{1000, 2500}, TaxSchemes: []string{floodgate.SchemeIE},
		CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now()}
	c.SetDefaults(f.clock.Now())
	if err := f.store.CreateCampaign(f.ctx, c); err != nil {
		f.tb.Fatalf("CreateCampaign(%s): %v", id, err)
	}
	return c
}

// donation returns an unsaved donation with a fresh key and hash.
func (f *fixture) donation(campaign string, amount int64) *floodgate.Donation {
	f.n++
	key := fmt.Sprintf("key-%d", f.n)
	h := sha256.Sum256([]byte(key))
	return &floodgate.Donation{CampaignID: campaign, IdempotencyKey: key, RequestHash: h[:],
		Amount: amount, Currency: "eur", Email: fmt.Sprintf("d%d@example.org", f.n), Name: "Donor",
		PaymentMethod: "pm_card_visa", Message: "Go on!", ClientAddr: "192.0.2.1",
		Declaration: &floodgate.Declaration{Scheme: floodgate.SchemeIE, TextVersion: "2026-01", FirstName: "A", LastName: "B"}}
}

// Intakes is a batch of donations as the intakes Store.Accept takes.
func Intakes(ds ...*floodgate.Donation) []floodgate.Intake {
	items := make([]floodgate.Intake, len(ds))
	for i, d := range ds {
		items[i] = d
	}
	return items
}

func (f *fixture) accept(ds ...*floodgate.Donation) []floodgate.AcceptResult {
	f.tb.Helper()
	return f.acceptItems(Intakes(ds...)...)
}

func (f *fixture) acceptItems(items ...floodgate.Intake) []floodgate.AcceptResult {
	f.tb.Helper()
	res, err := f.store.Accept(f.ctx, items)
	if err != nil {
		f.tb.Fatalf("Accept: %v", err)
	}
	if len(res) != len(items) {
		f.tb.Fatalf("Accept returned %d results for %d items", len(res), len(items))
	}
	return res
}

func (f *fixture) acceptNew(campaign string, amounts ...int64) []*floodgate.Donation {
	f.tb.Helper()
	var ds []*floodgate.Donation
	for _, a := range amounts {
		ds = append(ds, f.donation(campaign, a))
	}
	var out []*floodgate.Donation
	for i, r := range f.accept(ds...) {
		if r.Err != nil || r.Replayed {
			f.tb.Fatalf("donation %d: err %v replayed %v", i, r.Err, r.Replayed)
		}
		out = append(out, r.Donation())
	}
	return out
}

func (f *fixture) totals(campaign string) floodgate.Totals {
	f.tb.Helper()
	t, err := f.store.Totals(f.ctx, campaign)
	if err != nil {
		f.tb.Fatalf("Totals(%s): %v", campaign, err)
	}
	return *t
}

func (f *fixture) get(id string) *floodgate.Donation {
	f.tb.Helper()
	d, err := f.store.Donation(f.ctx, id)
	if err != nil {
		f.tb.Fatalf("Donation(%s): %v", id, err)
	}
	return d
}

// claim claims up to n orders for owner with a lease of a minute.
func (f *fixture) claim(owner string, n int) []*floodgate.PaymentOrder {
	f.tb.Helper()
	os, err := f.store.ClaimOrders(f.ctx, owner, n, time.Minute)
	if err != nil {
		f.tb.Fatalf("ClaimOrders: %v", err)
	}
	return os
}

// order returns the payment order of donation d.
func (f *fixture) order(d *floodgate.Donation) *floodgate.PaymentOrder {
	f.tb.Helper()
	o, err := f.store.OrderOf(f.ctx, floodgate.KindDonation, d.ID)
	if err != nil {
		f.tb.Fatalf("OrderOf(%s): %v", d.ID, err)
	}
	return o
}

func (f *fixture) settle(s floodgate.Settlement) *floodgate.PaymentOrder {
	f.tb.Helper()
	if s.At.IsZero() {
		s.At = f.clock.Now()
	}
	d, err := f.store.Settle(f.ctx, s)
	if err != nil {
		f.tb.Fatalf("Settle(%+v): %v", s, err)
	}
	return d
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := floodgate.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func wantTotals(tb testing.TB, got floodgate.Totals, raised, donations, pending, pendingCount, waiting int64) {
	tb.Helper()
	if got.Raised != raised || got.Donations != donations || got.Pending != pending ||
		got.PendingCount != pendingCount || got.Waiting != waiting {
		tb.Fatalf("totals = raised %d donations %d pending %d (%d) waiting %d; want %d %d %d (%d) %d",
			got.Raised, got.Donations, got.Pending, got.PendingCount, got.Waiting,
			raised, donations, pending, pendingCount, waiting)
	}
}

// ids lists what the orders pay for: the ids of their donations.
func ids(os []*floodgate.PaymentOrder) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.PaysFor)
	}
	return out
}

// donationIDs lists the donations' ids.
func donationIDs(ds []*floodgate.Donation) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.ID)
	}
	return out
}

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	t.Run("Campaigns", func(t *testing.T) { testCampaigns(t, open) })
	t.Run("Accept", func(t *testing.T) { testAccept(t, open) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, open) })
	t.Run("ConcurrentSameKey", func(t *testing.T) { testConcurrentSameKey(t, open) })
	t.Run("RefusedItem", func(t *testing.T) { testRefusedItem(t, open) })
	t.Run("ClaimFIFO", func(t *testing.T) { testClaimFIFO(t, open) })
	t.Run("Leases", func(t *testing.T) { testLeases(t, open) })
	t.Run("Settle", func(t *testing.T) { testSettle(t, open) })
	t.Run("NewPaymentMethod", func(t *testing.T) { testNewPaymentMethod(t, open) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, open) })
	t.Run("RequiresAction", func(t *testing.T) { testRequiresAction(t, open) })
	t.Run("ActionExpired", func(t *testing.T) { testActionExpired(t, open) })
	t.Run("NewKeyGeneration", func(t *testing.T) { testNewKeyGeneration(t, open) })
	t.Run("Backlog", func(t *testing.T) { testBacklog(t, open) })
	t.Run("Reverse", func(t *testing.T) { testReverse(t, open) })
	t.Run("Transitions", func(t *testing.T) { testTransitions(t, open) })
	t.Run("Fencing", func(t *testing.T) { testFencing(t, open) })
	t.Run("TakeBack", func(t *testing.T) { testTakeBack(t, open) })
	t.Run("Budget", func(t *testing.T) { testBudget(t, open) })
	t.Run("SettingsAndBlocks", func(t *testing.T) { testSettingsAndBlocks(t, open) })
	t.Run("Secret", func(t *testing.T) { testSecret(t, open) })
}

func testCampaigns(t *testing.T, open Opener) {
	f := newFixture(t, open)
	c := f.campaign("spring-appeal")
	wantCode(t, f.store.CreateCampaign(f.ctx, c), floodgate.ECONFLICT)

	got, err := f.store.Campaign(f.ctx, "spring-appeal")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != c.Name || got.Currency != "eur" || got.MinAmount != 50 || got.Goal != c.Goal ||
		!slices.Equal(got.SuggestedAmounts, c.SuggestedAmounts) || !slices.Equal(got.TaxSchemes, c.TaxSchemes) ||
		!got.OpensAt.Equal(c.OpensAt) || got.ClosesAt != nil {
		t.Fatalf("Campaign = %+v, want %+v", got, c)
	}
	_, err = f.store.Campaign(f.ctx, "nope")
	wantCode(t, err, floodgate.ENOTFOUND)

	f.campaign("autumn")
	all, err := f.store.Campaigns(f.ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("Campaigns = %d, %v; want 2", len(all), err)
	}

	name, goal, closes := "Renamed", int64(5), Epoch.Add(-time.Minute)
	upd, err := f.store.UpdateCampaign(f.ctx, "spring-appeal", floodgate.CampaignUpdate{Name: &name, Goal: &goal, ClosesAt: &closes}, Epoch)
	if err != nil {
		t.Fatal(err)
	}
	if upd.Name != name || upd.Goal != goal || upd.ClosesAt == nil || upd.State(Epoch) != floodgate.CampaignClosed {
		t.Fatalf("UpdateCampaign = %+v", upd)
	}
	if got, _ := f.store.Campaign(f.ctx, "spring-appeal"); got.Name != name || got.ClosesAt == nil || !got.ClosesAt.Equal(closes) {
		t.Fatalf("after update Campaign = %+v", got)
	}
	// Closed stays closed: closing again keeps the time it closed; a later
	// closes_at is refused.
	again, later := Epoch, Epoch.Add(time.Hour)
	if upd, err := f.store.UpdateCampaign(f.ctx, "spring-appeal", floodgate.CampaignUpdate{ClosesAt: &again}, Epoch); err != nil || !upd.ClosesAt.Equal(closes) {
		t.Fatalf("closing a closed campaign = %+v, %v; want closes_at kept at %s", upd, err, closes)
	}
	_, err = f.store.UpdateCampaign(f.ctx, "spring-appeal", floodgate.CampaignUpdate{ClosesAt: &later}, Epoch)
	wantCode(t, err, floodgate.ESTATE)
	if got, _ := f.store.Campaign(f.ctx, "spring-appeal"); got.State(Epoch) != floodgate.CampaignClosed {
		t.Fatalf("a refused reopening reopened: %+v", got)
	}
	bad := []int64{1}
	_, err = f.store.UpdateCampaign(f.ctx, "spring-appeal", floodgate.CampaignUpdate{SuggestedAmounts: &bad}, Epoch)
	wantCode(t, err, floodgate.EINVALID)
	_, err = f.store.UpdateCampaign(f.ctx, "nope", floodgate.CampaignUpdate{Name: &name}, Epoch)
	wantCode(t, err, floodgate.ENOTFOUND)

	wantTotals(t, f.totals("autumn"), 0, 0, 0, 0, 0)
	_, err = f.store.Totals(f.ctx, "nope")
	wantCode(t, err, floodgate.ENOTFOUND)
}

func testAccept(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2500, 50)
	seen := map[string]bool{}
	for i, d := range ds {
		if !floodgate.ValidID(floodgate.DonationIDPrefix, d.ID) || seen[d.ID] {
			t.Fatalf("donation %d id %q: not a fresh don_ id", i, d.ID)
		}
		seen[d.ID] = true
		if d.Status != floodgate.StatusAccepted || !d.CreatedAt.Equal(Epoch) {
			t.Fatalf("donation %d = %+v", i, d)
		}
		if i > 0 && d.Seq <= ds[i-1].Seq {
			t.Fatalf("seq not increasing: %d then %d", ds[i-1].Seq, d.Seq)
		}
		got := f.get(d.ID)
		if got.Amount != d.Amount || got.Email != d.Email || got.Seq != d.Seq || got.Declaration == nil ||
			got.Declaration.Scheme != floodgate.SchemeIE || got.ClientAddr != "192.0.2.1" || got.KeySince != nil {
			t.Fatalf("stored donation = %+v, want %+v", got, d)
		}
		h, err := f.store.History(f.ctx, d.ID)
		if err != nil || len(h) != 1 || h[0].Status != floodgate.StatusAccepted {
			t.Fatalf("History = %+v, %v", h, err)
		}
		// Its payment order waits in line at its place, in the current
		// request format, unclaimed.
		o, err := f.store.Order(f.ctx, d.OrderID)
		if err != nil || o.ID != floodgate.OrderIDOf(d.ID) || o.Kind != floodgate.KindDonation || o.PaysFor != d.ID ||
			o.Seq != d.Seq || o.CampaignID != "c" || o.Amount != d.Amount || o.Currency != "eur" || o.PaymentMethod != "pm_card_visa" ||
			o.ClientAddr != "192.0.2.1" || o.Status != floodgate.StatusAccepted || o.Format != floodgate.CurrentFormat ||
			o.Attempt != 0 || o.KeySince != nil || o.Token != 0 || o.ClaimedBy != "" || !o.CreatedAt.Equal(Epoch) {
			t.Fatalf("order of %s = %+v, %v", d.ID, o, err)
		}
		if byDonation := f.order(d); byDonation.ID != o.ID {
			t.Fatalf("OrderOf(%s) = %s, want %s", d.ID, byDonation.ID, o.ID)
		}
	}
	wantTotals(t, f.totals("c"), 0, 0, 3550, 3, 3)

	// A donation for an unknown campaign fails alone; its batch still commits.
	res := f.accept(f.donation("missing", 100), f.donation("c", 100))
	wantCode(t, res[0].Err, floodgate.ENOTFOUND)
	if res[1].Err != nil || res[1].Donation() == nil {
		t.Fatalf("second result = %+v", res[1])
	}
	wantTotals(t, f.totals("c"), 0, 0, 3650, 4, 4)

	_, err := f.store.Donation(f.ctx, "don_nope")
	wantCode(t, err, floodgate.ENOTFOUND)
	_, err = f.store.History(f.ctx, "don_nope")
	wantCode(t, err, floodgate.ENOTFOUND)
	_, err = f.store.Order(f.ctx, "po_nope")
	wantCode(t, err, floodgate.ENOTFOUND)
	_, err = f.store.OrderOf(f.ctx, floodgate.KindDonation, "don_nope")
	wantCode(t, err, floodgate.ENOTFOUND)
}

func testIdempotency(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	f.campaign("other")
	d := f.donation("c", 1000)
	first := f.accept(d)[0]

	again := *d
	res := f.accept(&again)[0]
	if res.Err != nil || !res.Replayed || res.Donation().ID != first.Donation().ID {
		t.Fatalf("replay = %+v, want same id %s", res, first.Donation().ID)
	}

	byKey, err := f.store.DonationByKey(f.ctx, "c", d.IdempotencyKey)
	if err != nil || byKey.ID != first.Donation().ID {
		t.Fatalf("DonationByKey = %+v, %v; want %s", byKey, err, first.Donation().ID)
	}
	_, err = f.store.DonationByKey(f.ctx, "other", d.IdempotencyKey)
	wantCode(t, err, floodgate.ENOTFOUND)
	_, err = f.store.DonationByKey(f.ctx, "c", "never-used")
	wantCode(t, err, floodgate.ENOTFOUND)

	changed := *d
	changed.Amount = 2000
	changed.RequestHash = []byte("another body")
	wantCode(t, f.accept(&changed)[0].Err, floodgate.EIDEMMISMATCH)

	// Keys are scoped to the campaign.
	elsewhere := *d
	elsewhere.CampaignID = "other"
	res = f.accept(&elsewhere)[0]
	if res.Err != nil || res.Replayed || res.Donation().ID == first.Donation().ID {
		t.Fatalf("same key in another campaign = %+v, want a new donation", res)
	}

	// The same key twice in one batch: one donation, both answered with it.
	x := f.donation("c", 700)
	y := *x
	rs := f.accept(x, &y)
	if rs[0].Err != nil || rs[1].Err != nil || rs[0].Donation().ID != rs[1].Donation().ID || rs[0].Replayed || !rs[1].Replayed {
		t.Fatalf("same key in one batch = %+v / %+v", rs[0], rs[1])
	}
	// Each answer goes to its own request: they must not share a donation
	// one of them could change under the other.
	if rs[0].Donation() == rs[1].Donation() {
		t.Fatal("same key in one batch: both answers hold the same *Donation")
	}
	wantTotals(t, f.totals("c"), 0, 0, 1700, 2, 2)
}

func testConcurrentSameKey(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	d := f.donation("c", 1000)
	const n = 8
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got = map[string]int{}
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := *d
			res, err := f.store.Accept(f.ctx, Intakes(&c))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				got["error: "+err.Error()]++
				return
			}
			got[res[0].Donation().ID]++
		}()
	}
	wg.Wait()
	if len(got) != 1 {
		t.Fatalf("concurrent accepts of one key gave %v, want one id", got)
	}
	wantTotals(t, f.totals("c"), 0, 0, 1000, 1, 1)
}

// testRefusedItem: an item refused inside a batch (a key used with
// another request, a campaign that does not exist) is refused alone; the
// rest of the batch commits, and every committed intake is answered by its
// key, through the look-up and through the accept path.
func testRefusedItem(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	kept := f.acceptNew("c", 1000)[0]

	a, b := f.donation("c", 200), f.donation("c", 300)
	mismatch := *kept
	mismatch.ID, mismatch.Seq, mismatch.Amount, mismatch.RequestHash = "", 0, 9999, []byte("another body")
	replay := *kept
	replay.ID, replay.Seq = "", 0
	missing := f.donation("missing", 400)
	batch := Intakes(a, &mismatch, b, missing, &replay)
	res := f.acceptItems(batch...)

	wantCode(t, res[1].Err, floodgate.EIDEMMISMATCH)
	wantCode(t, res[3].Err, floodgate.ENOTFOUND)
	for _, i := range []int{1, 3} {
		if res[i].Intake != nil || res[i].Replayed {
			t.Fatalf("refused item %d = %+v, want its error alone", i, res[i])
		}
	}
	if res[4].Err != nil || !res[4].Replayed || res[4].Donation().ID != kept.ID {
		t.Fatalf("replay in the batch = %+v, want %s", res[4], kept.ID)
	}
	for _, i := range []int{0, 2} {
		d := res[i].Donation()
		if res[i].Err != nil || res[i].Replayed || d == nil || d.Kind() != floodgate.KindDonation ||
			d.IntakeKey() != batch[i].IntakeKey() || d.Seq <= kept.Seq {
			t.Fatalf("new item %d = %+v", i, res[i])
		}
		if got := f.get(d.ID); got.Amount != d.Amount || got.Seq != d.Seq || got.Status != floodgate.StatusAccepted {
			t.Fatalf("stored item %d = %+v, want %+v", i, got, d)
		}
		byKey, err := f.store.DonationByKey(f.ctx, "c", d.IdempotencyKey)
		if err != nil || byKey.ID != d.ID {
			t.Fatalf("DonationByKey(item %d) = %+v, %v; want %s", i, byKey, err, d.ID)
		}
	}
	if res[0].Donation().Seq >= res[2].Donation().Seq {
		t.Fatalf("seq %d then %d: not in batch order", res[0].Donation().Seq, res[2].Donation().Seq)
	}
	if got := f.get(kept.ID); got.Amount != 1000 {
		t.Fatalf("the mismatched key's donation changed: %+v", got)
	}
	_, err := f.store.DonationByKey(f.ctx, "missing", missing.IdempotencyKey)
	wantCode(t, err, floodgate.ENOTFOUND)
	wantTotals(t, f.totals("c"), 0, 0, 1500, 3, 3)

	// The same batch again: what was committed replays, the refusals
	// stand, and nothing is counted twice.
	again := f.acceptItems(batch...)
	for _, i := range []int{0, 2, 4} {
		want := res[i].Donation().ID
		if again[i].Err != nil || !again[i].Replayed || again[i].Donation().ID != want {
			t.Fatalf("item %d sent again = %+v, want %s replayed", i, again[i], want)
		}
	}
	wantCode(t, again[1].Err, floodgate.EIDEMMISMATCH)
	wantCode(t, again[3].Err, floodgate.ENOTFOUND)

	// A batch of refusals alone commits nothing and fails nothing; the
	// next new intake takes the next place in line.
	none := f.acceptItems(&mismatch, missing)
	wantCode(t, none[0].Err, floodgate.EIDEMMISMATCH)
	wantCode(t, none[1].Err, floodgate.ENOTFOUND)
	next := f.acceptNew("c", 50)[0]
	if next.Seq <= res[2].Donation().Seq {
		t.Fatalf("seq after refusals = %d, want past %d", next.Seq, res[2].Donation().Seq)
	}
	wantTotals(t, f.totals("c"), 0, 0, 1550, 4, 4)
}

func testClaimFIFO(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("a")
	f.campaign("b")
	var want []string
	for i := range 5 {
		c := "a"
		if i%2 == 1 {
			c = "b"
		}
		want = append(want, f.acceptNew(c, 100)[0].ID)
	}
	first := f.claim("d1", 2)
	if !slices.Equal(ids(first), want[:2]) {
		t.Fatalf("first claim = %v, want %v", ids(first), want[:2])
	}
	tokens := map[int64]bool{}
	for _, o := range first {
		if o.Status != floodgate.StatusProcessing || o.ClaimedBy != "d1" || o.KeySince == nil || !o.KeySince.Equal(Epoch) ||
			o.LeaseUntil == nil || !o.LeaseUntil.Equal(Epoch.Add(time.Minute)) || o.Token == 0 || tokens[o.Token] {
			t.Fatalf("claimed order = %+v, want processing for d1 from now for a minute, under a token of its own", o)
		}
		tokens[o.Token] = true
		if d := f.get(o.PaysFor); d.Status != floodgate.StatusProcessing || d.ClaimedBy != "d1" || d.OrderID != o.ID {
			t.Fatalf("claimed donation = %+v", d)
		}
	}
	wantTotals(t, f.totals("a"), 0, 0, 300, 3, 2)
	wantTotals(t, f.totals("b"), 0, 0, 200, 2, 1)
	if rest := f.claim("d1", 10); !slices.Equal(ids(rest), want[2:]) {
		t.Fatalf("second claim = %v, want %v", ids(rest), want[2:])
	}
	if none := f.claim("d1", 10); len(none) != 0 {
		t.Fatalf("third claim = %v, want none", ids(none))
	}
	h, _ := f.store.History(f.ctx, want[0])
	if len(h) != 2 || h[1].Status != floodgate.StatusProcessing {
		t.Fatalf("History = %+v", h)
	}
}

func testLeases(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 100, 200)
	// A claim time with nanoseconds, which PostgreSQL keeps to the
	// microsecond.
	f.clock.Advance(1_234_567_891 * time.Nanosecond)
	claimed := f.claim("dead", 1)
	if len(claimed) != 1 || claimed[0].PaysFor != ds[0].ID {
		t.Fatalf("claim = %v", ids(claimed))
	}
	dead := claimed[0]
	keySince := *dead.KeySince
	// A claim from the line stamps the key's first use and the lease from
	// the same instant: the dispatcher reads "never sent" from it.
	if dead.LeaseUntil == nil || dead.LeaseUntil.Sub(keySince) != time.Minute {
		t.Fatalf("fresh claim: key since %v, lease until %v; want a lease of exactly a minute from the key's first use", keySince, dead.LeaseUntil)
	}

	// While the lease holds, nobody else gets it.
	f.clock.Advance(30 * time.Second)
	got := f.claim("alive", 5)
	if !slices.Equal(ids(got), []string{ds[1].ID}) {
		t.Fatalf("claim during lease = %v, want only %s", ids(got), ds[1].ID)
	}
	if n, err := f.store.ExtendClaims(f.ctx, []floodgate.Claim{got[0].Claim()}, time.Hour); err != nil || n != 1 {
		t.Fatalf("ExtendClaims = %d, %v; want the one claim renewed", n, err)
	}

	// After it expires, the orphan resumes with its key unchanged, under a
	// new token.
	f.clock.Advance(time.Minute)
	got = f.claim("alive", 5)
	if !slices.Equal(ids(got), []string{ds[0].ID}) {
		t.Fatalf("claim after expiry = %v, want the orphan %s (and not the extended %s)", ids(got), ds[0].ID, ds[1].ID)
	}
	if o := got[0]; o.ClaimedBy != "alive" || o.Attempt != 0 || !o.KeySince.Equal(keySince) || o.Status != floodgate.StatusProcessing ||
		o.Token <= dead.Token {
		t.Fatalf("resumed orphan = %+v, want it claimed by alive under a token after %d", o, dead.Token)
	}
	if o := got[0]; o.LeaseUntil.Sub(*o.KeySince) == time.Minute {
		t.Fatalf("resumed orphan: key since %v, lease until %v: it reads as never sent", o.KeySince, o.LeaseUntil)
	}

	// Taking every claim back (a single-node restart) makes all resumable
	// at once.
	if err := f.store.TakeBackClaims(f.ctx); err != nil {
		t.Fatal(err)
	}
	next := f.claim("next", 5)
	if len(next) != 2 {
		t.Fatalf("claim after take-back = %v, want both", ids(next))
	}
	claims := []floodgate.Claim{next[0].Claim(), next[1].Claim()}
	if err := f.store.ReleaseClaims(f.ctx, claims); err != nil {
		t.Fatal(err)
	}
	other := f.claim("other", 5)
	if len(other) != 2 {
		t.Fatalf("claim after a release = %v, want both", ids(other))
	}
	wantTotals(t, f.totals("c"), 0, 0, 300, 2, 0)

	// Deferring gives the claim up until a later time; only its holder
	// can.
	wantCode(t, f.store.Defer(f.ctx, next[0].Claim(), time.Hour), floodgate.ESTATE)
	if err := f.store.Defer(f.ctx, other[0].Claim(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if o := f.order(f.get(other[0].PaysFor)); o.ClaimedBy != "" || !near(*o.LeaseUntil, f.clock.Now().Add(time.Hour)) ||
		o.Status != floodgate.StatusProcessing || o.Attempt != 0 {
		t.Fatalf("deferred = %+v", o)
	}
	// The given-up claim is not renewed with the one still held.
	if n, err := f.store.ExtendClaims(f.ctx, []floodgate.Claim{other[0].Claim(), other[1].Claim()}, 2*time.Hour); err != nil || n != 1 {
		t.Fatalf("ExtendClaims = %d, %v; want only the claim still held renewed", n, err)
	}
	f.clock.Advance(time.Hour + time.Second)
	if got := f.claim("later", 5); !slices.Equal(ids(got), []string{other[0].PaysFor}) {
		t.Fatalf("claim after defer = %v, want %s", ids(got), other[0].PaysFor)
	}
	accepted := f.order(f.acceptNew("c", 100)[0])
	wantCode(t, f.store.Defer(f.ctx, accepted.Claim(), 0), floodgate.ESTATE)
	wantCode(t, f.store.Defer(f.ctx, floodgate.Claim{Order: "po_nope", Token: 1}, 0), floodgate.ENOTFOUND)
}

func testSettle(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000)
	f.claim("d", 2)
	f.clock.Advance(time.Second)

	ok := f.settle(floodgate.Settlement{OrderID: ds[0].OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_1", ClientSecret: "pi_1_secret"})
	if ok.Status != floodgate.StatusSucceeded || ok.PaymentIntentID != "pi_1" || ok.ClaimedBy != "" || ok.LeaseUntil != nil ||
		!ok.UpdatedAt.Equal(Epoch.Add(time.Second)) {
		t.Fatalf("settled = %+v", ok)
	}
	if d := f.get(ds[0].ID); d.Status != floodgate.StatusSucceeded || d.PaymentIntentID != "pi_1" || !d.UpdatedAt.Equal(ok.UpdatedAt) {
		t.Fatalf("settled donation = %+v", d)
	}
	bad := f.settle(floodgate.Settlement{OrderID: ds[1].OrderID, Status: floodgate.StatusFailed, PaymentIntentID: "pi_2", FailureCode: "card_declined"})
	if bad.Status != floodgate.StatusFailed || bad.FailureCode != "card_declined" {
		t.Fatalf("failed = %+v", bad)
	}
	tot := f.totals("c")
	wantTotals(t, tot, 1000, 1, 0, 0, 0)
	if tot.Pledged() != 1000 || !tot.UpdatedAt.Equal(Epoch.Add(time.Second)) {
		t.Fatalf("pledged %d updated %v", tot.Pledged(), tot.UpdatedAt)
	}

	// State moves only forward: a late failure never overwrites a success.
	d, err := f.store.Settle(f.ctx, floodgate.Settlement{OrderID: ds[0].OrderID, Status: floodgate.StatusFailed, At: f.clock.Now()})
	wantCode(t, err, floodgate.ESTATE)
	if d == nil || d.Status != floodgate.StatusSucceeded {
		t.Fatalf("ESTATE settle returned %+v, want the unchanged order", d)
	}
	// A success the provider reports after a failure is always recorded.
	f.settle(floodgate.Settlement{OrderID: ds[1].OrderID, Status: floodgate.StatusSucceeded})
	wantTotals(t, f.totals("c"), 3000, 2, 0, 0, 0)

	h, _ := f.store.History(f.ctx, ds[1].ID)
	var statuses []floodgate.DonationStatus
	for _, c := range h {
		statuses = append(statuses, c.Status)
	}
	if !slices.Equal(statuses, []floodgate.DonationStatus{"accepted", "processing", "failed", "succeeded"}) || h[2].FailureCode != "card_declined" {
		t.Fatalf("history = %+v", h)
	}
	_, err = f.store.Settle(f.ctx, floodgate.Settlement{OrderID: "po_nope", Status: floodgate.StatusSucceeded})
	wantCode(t, err, floodgate.ENOTFOUND)
}

func testNewPaymentMethod(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000)
	f.claim("d", 1)
	f.settle(floodgate.Settlement{OrderID: ds[0].OrderID, Status: floodgate.StatusFailed, PaymentIntentID: "pi_1", FailureCode: "card_declined"})
	_, err := f.store.ReplacePaymentMethod(f.ctx, ds[1].ID, "pm_card_mastercard", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)

	d, err := f.store.ReplacePaymentMethod(f.ctx, ds[0].ID, "pm_card_mastercard", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != floodgate.StatusAccepted || d.PaymentMethod != "pm_card_mastercard" || d.Attempt != 1 ||
		d.KeySince != nil || d.FailureCode != "" || d.Seq != ds[0].Seq || d.PaymentIntentID != "pi_1" {
		t.Fatalf("replaced = %+v", d)
	}
	// The new key generation is begun in the current request format.
	if o := f.order(d); o.Format != floodgate.CurrentFormat || o.PaymentMethod != "pm_card_mastercard" || o.Seq != ds[0].Seq {
		t.Fatalf("replaced order = %+v", o)
	}
	wantTotals(t, f.totals("c"), 0, 0, 3000, 2, 2)
	// It keeps its place: ahead of the gift accepted after it.
	if got := f.claim("d", 1); !slices.Equal(ids(got), []string{ds[0].ID}) {
		t.Fatalf("claim = %v, want %s first", ids(got), ds[0].ID)
	}
}

func testCancel(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000)
	d, err := f.store.CancelDonation(f.ctx, ds[0].ID, f.clock.Now())
	if err != nil || d.Status != floodgate.StatusCanceled {
		t.Fatalf("cancel = %+v, %v", d, err)
	}
	wantTotals(t, f.totals("c"), 0, 0, 2000, 1, 1)
	f.claim("d", 1)
	_, err = f.store.CancelDonation(f.ctx, ds[1].ID, f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	_, err = f.store.CancelDonation(f.ctx, ds[0].ID, f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	_, err = f.store.CancelDonation(f.ctx, "don_nope", f.clock.Now())
	wantCode(t, err, floodgate.ENOTFOUND)
}

func testRequiresAction(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000)
	f.claim("d", 2)
	next := []byte(`{"type":"use_stripe_sdk"}`)
	for _, d := range ds {
		got := f.settle(floodgate.Settlement{OrderID: d.OrderID, Status: floodgate.StatusRequiresAction,
			PaymentIntentID: "pi_" + d.ID, ClientSecret: "secret_" + d.ID, NextAction: next})
		if got.Status != floodgate.StatusRequiresAction || string(got.NextAction) != string(next) ||
			got.ClientSecret != "secret_"+d.ID || got.ActionSince == nil {
			t.Fatalf("requires_action = %+v", got)
		}
		f.clock.Advance(time.Minute)
	}
	wantTotals(t, f.totals("c"), 0, 0, 3000, 2, 0)

	exp, err := f.store.ActionExpired(f.ctx, Epoch.Add(30*time.Second), 10)
	if err != nil || !slices.Equal(ids(exp), []string{ds[0].ID}) {
		t.Fatalf("ActionExpired = %v, %v; want %s", ids(exp), err, ds[0].ID)
	}
	c := f.settle(floodgate.Settlement{OrderID: ds[0].OrderID, Status: floodgate.StatusCanceled, Note: "action timeout"})
	if c.NextAction != nil || c.Status != floodgate.StatusCanceled {
		t.Fatalf("canceled = %+v", c)
	}
	wantTotals(t, f.totals("c"), 0, 0, 2000, 1, 0)
	exp, _ = f.store.ActionExpired(f.ctx, f.clock.Now(), 10)
	if !slices.Equal(ids(exp), []string{ds[1].ID}) {
		t.Fatalf("ActionExpired = %v", ids(exp))
	}
}

// testActionExpired pins what the expirer is given: orders in
// requires_action whose action began strictly before the bound, oldest
// action first and, on the same instant, in line order (seq); exactly n of
// them when there are more; none for n <= 0; never an order in any other
// state, whatever its action_since.
func testActionExpired(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900)
	if got := f.claim("d", len(ds)); len(got) != len(ds) {
		t.Fatalf("claimed %d of %d", len(got), len(ds))
	}
	waiting := f.acceptNew("c", 2000)[0]
	at := func(d time.Duration) time.Time { return Epoch.Add(d) }
	action := func(d *floodgate.Donation, since time.Time) {
		t.Helper()
		o := f.settle(floodgate.Settlement{OrderID: d.OrderID, Status: floodgate.StatusRequiresAction,
			PaymentIntentID: "pi_" + d.ID, NextAction: []byte(`{"type":"use_stripe_sdk"}`), At: since})
		if o.ActionSince == nil || !o.ActionSince.Equal(since) {
			t.Fatalf("action of %s began at %v, want %v", d.ID, o.ActionSince, since)
		}
	}
	// Three actions begin on the same instant, written in the reverse of
	// their line order, so that neither the order of the writes nor where
	// a row happens to lie can pass for the tie-break.
	action(ds[3], at(time.Minute))
	action(ds[2], at(time.Minute))
	action(ds[1], at(time.Minute))
	action(ds[0], at(2*time.Minute)) // first in line, but a later action
	action(ds[4], at(3*time.Minute)) // exactly at the bound below
	action(ds[5], at(4*time.Minute)) // after it
	// The oldest actions of all ended: the donor finished 3-D Secure, or
	// the action was canceled. They keep their action_since.
	action(ds[6], at(0))
	f.settle(floodgate.Settlement{OrderID: ds[6].OrderID, Status: floodgate.StatusCanceled, Note: "action timeout", At: at(5 * time.Minute)})
	action(ds[7], at(0))
	f.settle(floodgate.Settlement{OrderID: ds[7].OrderID, Status: floodgate.StatusSucceeded, At: at(5 * time.Minute)})
	// ds[8] is still being charged; ds[9] failed without an action.
	f.settle(floodgate.Settlement{OrderID: ds[9].OrderID, Status: floodgate.StatusFailed, FailureCode: "card_declined", At: at(0)})

	expired := func(before time.Time, n int) []string {
		t.Helper()
		os, err := f.store.ActionExpired(f.ctx, before, n)
		if err != nil {
			t.Fatalf("ActionExpired(%v, %d): %v", before, n, err)
		}
		for _, o := range os {
			if o.Status != floodgate.StatusRequiresAction || o.ActionSince == nil || !o.ActionSince.Before(before) ||
				o.ID != floodgate.OrderIDOf(o.PaysFor) || o.PaymentIntentID != "pi_"+o.PaysFor {
				t.Fatalf("ActionExpired(%v, %d) returned %+v", before, n, o)
			}
		}
		return ids(os)
	}
	name := map[string]string{waiting.ID: "waiting"}
	for i, d := range ds {
		name[d.ID] = fmt.Sprintf("ds[%d]", i)
	}
	want := func(what string, got []string, want ...*floodgate.Donation) {
		t.Helper()
		if !slices.Equal(got, donationIDs(want)) {
			named := func(ids []string) []string {
				var out []string
				for _, id := range ids {
					out = append(out, name[id])
				}
				return out
			}
			t.Fatalf("%s = %v, want %v", what, named(got), named(donationIDs(want)))
		}
	}

	bound := at(3 * time.Minute)
	all := []*floodgate.Donation{ds[1], ds[2], ds[3], ds[0]}
	want("oldest action first, ties in line order", expired(bound, 10), all...)
	// The limit is honoured exactly, and takes the head of that order.
	for n := len(all); n >= 1; n-- {
		want(fmt.Sprintf("limit %d", n), expired(bound, n), all[:n]...)
	}
	// No limit is no orders, not every order.
	for _, n := range []int{0, -1} {
		if got, err := f.store.ActionExpired(f.ctx, bound, n); err != nil || len(got) != 0 {
			t.Fatalf("ActionExpired(n=%d) = %v, %v; want none and no error", n, ids(got), err)
		}
	}
	// The bound is exclusive: an action that began exactly at it has not
	// expired; a microsecond later (the finest time both engines keep) it
	// has.
	want("bound on the tied instant", expired(at(time.Minute), 10))
	want("a microsecond past the bound", expired(bound.Add(time.Microsecond), 10), append(all, ds[4])...)
	want("every action", expired(at(time.Hour), 100), append(all, ds[4], ds[5])...)

	// An action that ends leaves the list; the rest keep their order.
	f.settle(floodgate.Settlement{OrderID: ds[2].OrderID, Status: floodgate.StatusCanceled, Note: "action timeout", At: at(6 * time.Minute)})
	want("after a cancel", expired(bound, 10), ds[1], ds[3], ds[0])
}

func testNewKeyGeneration(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000)
	_, err := f.store.NewKeyGeneration(f.ctx, f.order(ds[0]).Claim(), 0, "", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE) // not processing yet
	c := f.claim("d", 1)[0].Claim()
	f.clock.Advance(30 * time.Second)
	o, err := f.store.NewKeyGeneration(f.ctx, c, 0, "", f.clock.Now())
	if err != nil || o.Attempt != 1 || o.Status != floodgate.StatusProcessing || !o.KeySince.Equal(f.clock.Now()) ||
		o.Format != floodgate.CurrentFormat || o.Token != c.Token || o.ClaimedBy != "d" {
		t.Fatalf("NewKeyGeneration = %+v, %v", o, err)
	}
	// A second caller that saw generation 0 loses.
	_, err = f.store.NewKeyGeneration(f.ctx, c, 0, "", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	wantTotals(t, f.totals("c"), 0, 0, 1000, 1, 0)

	// Only the claim's holder moves it on.
	_, err = f.store.NewKeyGeneration(f.ctx, floodgate.Claim{Order: c.Order, Seq: c.Seq, Token: c.Token + 1000}, 1, "", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)

	// A PaymentIntent found awaiting confirmation is recorded with the
	// new generation.
	o, err = f.store.NewKeyGeneration(f.ctx, c, 1, "pi_found", f.clock.Now())
	if err != nil || o.Attempt != 2 || o.PaymentIntentID != "pi_found" {
		t.Fatalf("NewKeyGeneration with a PaymentIntent = %+v, %v", o, err)
	}
	if d := f.get(ds[0].ID); d.Attempt != 2 || d.PaymentIntentID != "pi_found" {
		t.Fatalf("donation after new keys = %+v", d)
	}
}

func testReverse(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 2500, 1000)
	f.claim("d", 2)
	f.settle(floodgate.Settlement{OrderID: ds[0].OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_1"})
	f.settle(floodgate.Settlement{OrderID: ds[1].OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_2"})
	wantTotals(t, f.totals("c"), 3500, 2, 0, 0, 0)
	if byPI, err := f.store.OrderByPaymentIntent(f.ctx, "pi_2"); err != nil || byPI.PaysFor != ds[1].ID || byPI.ID != ds[1].OrderID {
		t.Fatalf("OrderByPaymentIntent = %+v, %v", byPI, err)
	}
	_, err := f.store.OrderByPaymentIntent(f.ctx, "pi_nope")
	wantCode(t, err, floodgate.ENOTFOUND)

	d, err := f.store.Reverse(f.ctx, ds[0].OrderID, floodgate.ReversalRefund, 1000, f.clock.Now())
	if err != nil || d.Refunded != 1000 || d.Status != floodgate.StatusSucceeded {
		t.Fatalf("Reverse = %+v, %v", d, err)
	}
	if got := f.get(ds[0].ID); got.Refunded != 1000 || got.Net() != 1500 {
		t.Fatalf("refunded donation = %+v", got)
	}
	wantTotals(t, f.totals("c"), 2500, 2, 0, 0, 0)
	// A replayed or older report changes nothing.
	_, err = f.store.Reverse(f.ctx, ds[0].OrderID, floodgate.ReversalRefund, 1000, f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	_, err = f.store.Reverse(f.ctx, ds[0].OrderID, floodgate.ReversalRefund, 500, f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	// A dispute takes off only what the refund left.
	d, err = f.store.Reverse(f.ctx, ds[0].OrderID, floodgate.ReversalDispute, 2500, f.clock.Now())
	if err != nil || d.Disputed != 2500 || d.Refunded != 1000 {
		t.Fatalf("dispute = %+v, %v", d, err)
	}
	wantTotals(t, f.totals("c"), 1000, 2, 0, 0, 0)
	h, _ := f.store.History(f.ctx, ds[0].ID)
	if last := h[len(h)-1]; last.Status != floodgate.StatusSucceeded || last.Note == "" {
		t.Fatalf("history = %+v", h)
	}
	// A refund that arrives before the success it reverses is kept, and
	// the success then brings in only the rest.
	early := f.acceptNew("c", 800)[0]
	if d, err := f.store.Reverse(f.ctx, early.OrderID, floodgate.ReversalRefund, 300, f.clock.Now()); err != nil || d.Refunded != 300 {
		t.Fatalf("refund before success = %+v, %v", d, err)
	}
	wantTotals(t, f.totals("c"), 1000, 2, 800, 1, 1)
	f.claim("d", 1)
	f.settle(floodgate.Settlement{OrderID: early.OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_3"})
	wantTotals(t, f.totals("c"), 1500, 3, 0, 0, 0)
	_, err = f.store.Reverse(f.ctx, "po_nope", floodgate.ReversalRefund, 1, f.clock.Now())
	wantCode(t, err, floodgate.ENOTFOUND)
}

// testTransitions holds every change of an order to what the domain
// decides: the order a store returns, and what a later read finds, are the
// Transition's order, field for field; a donation a store returns shows
// that order; and the history's last line is the Transition's.
func testTransitions(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000)
	claims := map[string]floodgate.Claim{}
	for _, o := range f.claim("d", 2) {
		claims[o.PaysFor] = o.Claim()
	}
	step := func(name string, d *floodgate.Donation, decide func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error),
		apply func(at time.Time) (*floodgate.PaymentOrder, error)) {
		t.Helper()
		f.clock.Advance(time.Second)
		at := f.clock.Now()
		want, err := decide(f.order(d), at)
		if err != nil {
			t.Fatalf("%s: the domain refused: %v", name, err)
		}
		got, err := apply(at)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g, w := normalized(got), normalized(want.Order); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s returned\n%+v\nthe domain decided\n%+v", name, g, w)
		}
		if g, w := normalized(f.order(d)), normalized(want.Order); !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: read back\n%+v\nthe domain decided\n%+v", name, g, w)
		}
		h, err := f.store.History(f.ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, line := h[len(h)-1], want.History
		if last.Status != line.Status || !last.At.Equal(line.At) || last.FailureCode != line.FailureCode || last.Note != line.Note {
			t.Fatalf("%s: history ends with %+v, the domain decided %+v", name, last, *line)
		}
	}
	// viaDonation applies a change a store makes by the donation's id, and
	// holds the donation it returns to its order as it now is.
	viaDonation := func(d *floodgate.Donation, change func(at time.Time) (*floodgate.Donation, error)) func(time.Time) (*floodgate.PaymentOrder, error) {
		return func(at time.Time) (*floodgate.PaymentOrder, error) {
			got, err := change(at)
			if err != nil {
				return nil, err
			}
			o := f.order(d)
			want := *f.get(d.ID)
			want.ShowOrder(o)
			if g, w := normalizedDonation(got), normalizedDonation(&want); !reflect.DeepEqual(g, w) {
				t.Fatalf("the store returned the donation\n%+v\nwhose order is now\n%+v", g, w)
			}
			return o, nil
		}
	}
	next := []byte(`{"type":"use_stripe_sdk","use_stripe_sdk":{"type":"three_d_secure_redirect"}}`)
	s := f.store

	a, ca := ds[0], claims[ds[0].ID]
	step("new key generation", a, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyNewKeyGeneration(o, ca.Token, 0, "pi_a", at, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) {
		return s.NewKeyGeneration(f.ctx, ca, 0, "pi_a", at)
	})
	ra := floodgate.Settlement{OrderID: a.OrderID, Token: ca.Token, Status: floodgate.StatusRequiresAction, ClientSecret: "pi_a_secret", NextAction: next}
	step("requires_action under the claim", a, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		ra.At = at
		return floodgate.ApplySettlement(o, ra, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) { ra.At = at; return s.Settle(f.ctx, ra) })
	step("early refund", a, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyReversal(o, floodgate.ReversalRefund, 300, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) {
		return s.Reverse(f.ctx, a.OrderID, floodgate.ReversalRefund, 300, at)
	})
	ok := floodgate.Settlement{OrderID: a.OrderID, Status: floodgate.StatusSucceeded, Note: "authenticated"}
	step("succeeded naming no PaymentIntent", a, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		ok.At = at
		return floodgate.ApplySettlement(o, ok, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) { ok.At = at; return s.Settle(f.ctx, ok) })
	step("dispute", a, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyReversal(o, floodgate.ReversalDispute, 1000, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) {
		return s.Reverse(f.ctx, a.OrderID, floodgate.ReversalDispute, 1000, at)
	})

	b := ds[1]
	fail := floodgate.Settlement{OrderID: b.OrderID, Status: floodgate.StatusFailed, PaymentIntentID: "pi_b", FailureCode: "card_declined"}
	step("failed", b, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		fail.At = at
		return floodgate.ApplySettlement(o, fail, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) { fail.At = at; return s.Settle(f.ctx, fail) })
	step("new payment method", b, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		return floodgate.ApplyPaymentMethod(o, "pm_card_mastercard", at)
	}, viaDonation(b, func(at time.Time) (*floodgate.Donation, error) {
		return s.ReplacePaymentMethod(f.ctx, b.ID, "pm_card_mastercard", at)
	}))
	step("cancel", b, floodgate.ApplyCancel, viaDonation(b, func(at time.Time) (*floodgate.Donation, error) {
		return s.CancelDonation(f.ctx, b.ID, at)
	}))
	late := floodgate.Settlement{OrderID: b.OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_b"}
	step("succeeded after a cancel", b, func(o *floodgate.PaymentOrder, at time.Time) (floodgate.Transition, error) {
		late.At = at
		return floodgate.ApplySettlement(o, late, at)
	}, func(at time.Time) (*floodgate.PaymentOrder, error) { late.At = at; return s.Settle(f.ctx, late) })

	// 1000 less the 300 refunded and the 1000 disputed (capped at what was
	// left), and 2000.
	wantTotals(t, f.totals("c"), 2000, 2, 0, 0, 0)
}

// normalized is o in one form whatever engine read it: times in UTC, no
// next_action as nil.
func normalized(o *floodgate.PaymentOrder) floodgate.PaymentOrder {
	c := *o
	normalize(&c.KeySince, &c.ActionSince, &c.LeaseUntil, &c.CreatedAt, &c.UpdatedAt, &c.NextAction)
	return c
}

// normalizedDonation is d in one form whatever engine read it.
func normalizedDonation(d *floodgate.Donation) floodgate.Donation {
	c := *d
	normalize(&c.KeySince, &c.ActionSince, &c.LeaseUntil, &c.CreatedAt, &c.UpdatedAt, &c.NextAction)
	return c
}

// normalize puts the times of an order (or of a donation's) in UTC, and
// an empty next_action as none.
func normalize(keySince, actionSince, leaseUntil **time.Time, created, updated *time.Time, next *json.RawMessage) {
	*keySince, *actionSince, *leaseUntil = utc(*keySince), utc(*actionSince), utc(*leaseUntil)
	*created, *updated = created.UTC(), updated.UTC()
	if len(*next) == 0 {
		*next = nil
	}
}

// near reports whether a, read back from a store, is b as the store keeps
// it: PostgreSQL keeps microseconds.
func near(a, b time.Time) bool { return a.Sub(b) <= 0 && a.Sub(b) > -time.Microsecond }

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// testFencing: a claim's writes apply only while it holds its order. A
// dispatcher whose lease ran out on the store's clock, and whose order
// another took over, reports late: its settlement is refused and kept as
// a history line, never applied over the newer attempt, and its defer, new
// key, renewal and release change nothing. The newer claim's settlement
// applies.
func testFencing(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	d := f.acceptNew("c", 1000)[0]
	first := f.claim("first", 1)[0]
	stale := first.Claim()

	// The first holder stalls past its lease; another takes the order over.
	f.clock.Advance(time.Minute + time.Second)
	second := f.claim("second", 1)
	if len(second) != 1 || second[0].ID != first.ID || second[0].Token <= stale.Token || second[0].ClaimedBy != "second" {
		t.Fatalf("takeover = %+v, want %s under a newer token than %d", second, first.ID, stale.Token)
	}
	held := second[0]
	history := func() []floodgate.StatusChange {
		t.Helper()
		h, err := f.store.History(f.ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	before := history()

	// The first holder's late result.
	f.clock.Advance(time.Second)
	got, err := f.store.Settle(f.ctx, floodgate.Settlement{OrderID: first.ID, Token: stale.Token, Status: floodgate.StatusSucceeded,
		PaymentIntentID: "pi_late", At: f.clock.Now()})
	wantCode(t, err, floodgate.ESTATE)
	if got == nil || !reflect.DeepEqual(normalized(got), normalized(held)) {
		t.Fatalf("refused settle returned %+v, want the order as the second claim holds it", got)
	}
	if o := f.order(d); !reflect.DeepEqual(normalized(o), normalized(held)) {
		t.Fatalf("after the late result the order is %+v, want it untouched: %+v", o, held)
	}
	wantTotals(t, f.totals("c"), 0, 0, 1000, 1, 0)
	after := history()
	if len(after) != len(before)+1 {
		t.Fatalf("history %+v, want one line more than %+v", after, before)
	}
	line := after[len(after)-1]
	if line.Status != floodgate.StatusProcessing || !line.At.Equal(f.clock.Now()) ||
		line.Note != fmt.Sprintf("late result from a claim no longer held (fencing token %d): succeeded (pi_late); not applied", stale.Token) {
		t.Fatalf("the late result's history line = %+v", line)
	}

	// Everything else under the stale token changes nothing.
	_, err = f.store.NewKeyGeneration(f.ctx, stale, 0, "", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	wantCode(t, f.store.Defer(f.ctx, stale, time.Hour), floodgate.ESTATE)
	if n, err := f.store.ExtendClaims(f.ctx, []floodgate.Claim{stale}, time.Hour); err != nil || n != 0 {
		t.Fatalf("ExtendClaims under a stale token = %d, %v; want none renewed", n, err)
	}
	if err := f.store.ReleaseClaims(f.ctx, []floodgate.Claim{stale}); err != nil {
		t.Fatal(err)
	}
	if o := f.order(d); !reflect.DeepEqual(normalized(o), normalized(held)) {
		t.Fatalf("after stale writes the order is %+v, want it untouched: %+v", o, held)
	}
	if h := history(); len(h) != len(after) {
		t.Fatalf("stale writes other than a result added history: %+v", h[len(after):])
	}

	// The holder's own writes apply.
	if n, err := f.store.ExtendClaims(f.ctx, []floodgate.Claim{held.Claim()}, time.Minute); err != nil || n != 1 {
		t.Fatalf("ExtendClaims under the held token = %d, %v", n, err)
	}
	o, err := f.store.NewKeyGeneration(f.ctx, held.Claim(), 0, "", f.clock.Now())
	if err != nil || o.Attempt != 1 || o.Token != held.Token {
		t.Fatalf("NewKeyGeneration under the held token = %+v, %v", o, err)
	}
	o = f.settle(floodgate.Settlement{OrderID: held.ID, Token: held.Token, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_new"})
	if o.Status != floodgate.StatusSucceeded || o.PaymentIntentID != "pi_new" {
		t.Fatalf("the holder's settle = %+v", o)
	}
	wantTotals(t, f.totals("c"), 1000, 1, 0, 0, 0)

	// A lease that ran out with nobody taking over holds no more either.
	d2 := f.acceptNew("c", 500)[0]
	lapsed := f.claim("slow", 1)[0]
	f.clock.Advance(time.Minute + time.Second)
	_, err = f.store.Settle(f.ctx, floodgate.Settlement{OrderID: lapsed.ID, Token: lapsed.Token, Status: floodgate.StatusFailed,
		FailureCode: "card_declined", At: f.clock.Now()})
	wantCode(t, err, floodgate.ESTATE)
	if got := f.get(d2.ID); got.Status != floodgate.StatusProcessing || got.FailureCode != "" {
		t.Fatalf("a lapsed claim's result was applied: %+v", got)
	}
	wantCode(t, f.store.Defer(f.ctx, lapsed.Claim(), time.Hour), floodgate.ESTATE)
	// Released at a clean shutdown: the same.
	resumed := f.claim("slow", 1)[0]
	if err := f.store.ReleaseClaims(f.ctx, []floodgate.Claim{resumed.Claim()}); err != nil {
		t.Fatal(err)
	}
	_, err = f.store.Settle(f.ctx, floodgate.Settlement{OrderID: resumed.ID, Token: resumed.Token, Status: floodgate.StatusSucceeded, At: f.clock.Now()})
	wantCode(t, err, floodgate.ESTATE)
	// A settlement from the provider itself (no claim) applies whoever
	// holds the order.
	f.claim("third", 1)
	f.settle(floodgate.Settlement{OrderID: d2.OrderID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_webhook"})
	wantTotals(t, f.totals("c"), 1500, 2, 0, 0, 0)
}

// testTakeBack: a take-back (a single node starting after a crash) ends
// every claim under a new token, deferred ones included: whatever a
// former holder still sends is refused.
func testTakeBack(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	f.acceptNew("c", 100, 200)
	claimed := f.claim("before", 2)
	if err := f.store.Defer(f.ctx, claimed[1].Claim(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := f.store.TakeBackClaims(f.ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range claimed {
		o, err := f.store.Order(f.ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if o.Token == c.Token || o.Held(c.Token, f.clock.Now()) || o.Status != floodgate.StatusProcessing || o.LeaseUntil.After(f.clock.Now()) {
			t.Fatalf("taken back: %+v (claimed under %d)", o, c.Token)
		}
		_, err = f.store.Settle(f.ctx, floodgate.Settlement{OrderID: c.ID, Token: c.Token, Status: floodgate.StatusSucceeded, At: f.clock.Now()})
		wantCode(t, err, floodgate.ESTATE)
	}
	if n, err := f.store.ExtendClaims(f.ctx, []floodgate.Claim{claimed[0].Claim()}, time.Hour); err != nil || n != 0 {
		t.Fatalf("ExtendClaims after the take-back = %d, %v", n, err)
	}
	// Both resume at once, the deferred one too.
	if again := f.claim("after", 5); len(again) != 2 {
		t.Fatalf("claim after the take-back = %v, want both", ids(again))
	}
	wantTotals(t, f.totals("c"), 0, 0, 300, 2, 0)
}

func testBacklog(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	b, err := f.store.Backlog(f.ctx)
	if err != nil || b.Waiting != 0 || b.HeadSeq != 0 {
		t.Fatalf("empty Backlog = %+v, %v", b, err)
	}
	first := f.acceptNew("c", 100, 100)
	f.clock.Advance(time.Second)
	later := f.acceptNew("c", 100)
	b, _ = f.store.Backlog(f.ctx)
	if b.Waiting != 3 || b.HeadSeq != first[0].Seq || !b.Oldest.Equal(Epoch) {
		t.Fatalf("Backlog = %+v", b)
	}
	f.claim("d", 2)
	b, _ = f.store.Backlog(f.ctx)
	if b.Waiting != 1 || b.HeadSeq != later[0].Seq || !b.Oldest.Equal(Epoch.Add(time.Second)) {
		t.Fatalf("Backlog after claim = %+v", b)
	}
}

func testBudget(t *testing.T, open Opener) {
	f := newFixture(t, open)
	take := func(want int, cut bool) floodgate.BudgetGrant {
		t.Helper()
		g, err := f.store.TakeBudget(f.ctx, floodgate.BudgetRequest{Name: floodgate.BudgetPaymentIntents, Rate: 20, Want: want, Cut: cut, Now: f.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := take(5, false); g.Granted != 1 || g.Rate != 20 {
		t.Fatalf("first take = %+v", g)
	}
	if g := take(5, false); g.Granted != 0 {
		t.Fatalf("no time passed: %+v", g)
	}
	f.clock.Advance(time.Second)
	if g := take(100, false); g.Granted != 10 {
		t.Fatalf("after a second: %+v, want 10 (half a second's worth)", g)
	}
	f.clock.Advance(time.Second)
	if g := take(0, true); g.Rate != 10 {
		t.Fatalf("after a cut: %+v", g)
	}
	// Budgets are independent.
	g, err := f.store.TakeBudget(f.ctx, floodgate.BudgetRequest{Name: floodgate.BudgetProvider, Rate: 80, Want: 1, Now: f.clock.Now()})
	if err != nil || g.Granted != 1 || g.Rate != 80 {
		t.Fatalf("another budget = %+v, %v", g, err)
	}
}

func testSettingsAndBlocks(t *testing.T, open Opener) {
	f := newFixture(t, open)
	_, _, err := f.store.Setting(f.ctx, "charging_paused")
	wantCode(t, err, floodgate.ENOTFOUND)
	if err := f.store.SetSetting(f.ctx, "charging_paused", "true", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	if err := f.store.SetSetting(f.ctx, "charging_paused", "false", f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	v, at, err := f.store.Setting(f.ctx, "charging_paused")
	if err != nil || v != "false" || !at.Equal(f.clock.Now()) {
		t.Fatalf("Setting = %q %v %v", v, at, err)
	}

	now := f.clock.Now()
	if blocked, err := f.store.FingerprintBlocked(f.ctx, "fp1", now); err != nil || blocked {
		t.Fatalf("unknown fingerprint blocked: %v %v", blocked, err)
	}
	if err := f.store.BlockFingerprint(f.ctx, "fp1", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// A shorter block never shortens a longer one.
	if err := f.store.BlockFingerprint(f.ctx, "fp1", now, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if blocked, _ := f.store.FingerprintBlocked(f.ctx, "fp1", now.Add(30*time.Minute)); !blocked {
		t.Fatal("fp1 not blocked within its hour")
	}
	if blocked, _ := f.store.FingerprintBlocked(f.ctx, "fp1", now.Add(2*time.Hour)); blocked {
		t.Fatal("fp1 still blocked after its hour")
	}
	if err := f.store.BlockFingerprint(f.ctx, "fp2", now.Add(time.Minute), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := f.store.FingerprintsBlockedSince(f.ctx, now.Add(30*time.Second)); err != nil || n != 1 {
		t.Fatalf("FingerprintsBlockedSince = %d, %v; want 1", n, err)
	}
}

func testSecret(t *testing.T, open Opener) {
	f := newFixture(t, open)
	a, err := f.store.Secret(f.ctx, "donor-token")
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret = %x, %v", a, err)
	}
	again, _ := f.store.Secret(f.ctx, "donor-token")
	other, _ := f.store.Secret(f.ctx, "other")
	if !slices.Equal(a, again) || slices.Equal(a, other) {
		t.Fatalf("secrets: %x %x %x", a, again, other)
	}
	if err := f.store.Ping(f.ctx); err != nil {
		t.Fatal(err)
	}
}
