package storetest

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

// RunReports runs the floodgate.Reports suite against stores made by open,
// which must also implement floodgate.Reports.
func RunReports(t *testing.T, open Opener) {
	t.Run("GiftAid", func(t *testing.T) { testGiftAid(t, open) })
	t.Run("DonorTotals", func(t *testing.T) { testDonorTotals(t, open) })
}

// Gift describes one donation that Give stores and drives to its final
// state, with the store's own methods.
type Gift struct {
	// At is when the gift is accepted; it is its CreatedAt.
	At       time.Time
	Campaign string
	Currency string
	Email    string
	Name     string
	Amount   int64
	Decl     *floodgate.Declaration
	// Status is where the gift ends: accepted, processing, requires_action,
	// succeeded (when empty), failed or canceled.
	Status floodgate.DonationStatus
	// Refunded and Disputed, when not zero, are reported for a succeeded
	// gift after it settles (refund first).
	Refunded, Disputed int64
}

// ReportLease is the lease Give claims with: long enough that a gift left
// processing is never resumed as an orphan, however far the clock moves.
const ReportLease = 100 * 365 * 24 * time.Hour

// Give accepts gs as one batch at gs[0].At (so they share a creation time
// and are ordered by seq), then drives each to its Status and records its
// refund and dispute, all at that time. It returns the stored donations as
// they end. Gifts left accepted must be given after every other: they
// stay in the line, and the next Give would claim them.
func Give(tb testing.TB, s floodgate.Store, clock interface{ Set(time.Time) }, gs ...Gift) []*floodgate.Donation {
	tb.Helper()
	ctx := tb.Context()
	at := gs[0].At
	clock.Set(at)
	batch := make([]*floodgate.Donation, len(gs))
	for i, g := range gs {
		if g.Status == "" {
			gs[i].Status = floodgate.StatusSucceeded
		}
		key := fmt.Sprintf("gift-%d", giftKeys.Add(1))
		h := sha256.Sum256([]byte(key))
		batch[i] = &floodgate.Donation{CampaignID: g.Campaign, IdempotencyKey: key, RequestHash: h[:],
			Amount: g.Amount, Currency: g.Currency, Email: g.Email, Name: g.Name, PaymentMethod: "pm_card_visa",
			ClientAddr: "192.0.2.1", Declaration: g.Decl}
	}
	res, err := s.Accept(ctx, Intakes(batch...))
	if err != nil {
		tb.Fatalf("Accept: %v", err)
	}
	out := make([]*floodgate.Donation, len(gs))
	var toClaim []string
	for i, r := range res {
		if r.Err != nil || r.Replayed {
			tb.Fatalf("gift %d: err %v, replayed %v", i, r.Err, r.Replayed)
		}
		out[i] = r.Donation()
		switch gs[i].Status {
		case floodgate.StatusAccepted:
		case floodgate.StatusCanceled:
			if out[i], err = s.CancelDonation(ctx, r.Donation().ID, at); err != nil {
				tb.Fatalf("CancelDonation: %v", err)
			}
		default:
			toClaim = append(toClaim, r.Donation().ID)
		}
	}
	tokens := map[string]int64{}
	if len(toClaim) > 0 {
		claimed, err := s.ClaimOrders(ctx, "reports", len(toClaim), ReportLease)
		if err != nil {
			tb.Fatalf("ClaimOrders: %v", err)
		}
		if got := ids(claimed); !slices.Equal(got, toClaim) {
			tb.Fatalf("claimed %v, want %v: was a gift left accepted before this one?", got, toClaim)
		}
		for _, o := range claimed {
			tokens[o.ID] = o.Token
		}
	}
	for i, g := range gs {
		d := out[i]
		switch g.Status {
		case floodgate.StatusSucceeded, floodgate.StatusFailed, floodgate.StatusRequiresAction:
			st := floodgate.Settlement{OrderID: d.OrderID, Token: tokens[d.OrderID], Status: g.Status, PaymentIntentID: "pi_" + d.ID, At: at}
			if g.Status == floodgate.StatusFailed {
				st.FailureCode = "card_declined"
			}
			if _, err = s.Settle(ctx, st); err != nil {
				tb.Fatalf("Settle(%s, %s): %v", out[i].ID, g.Status, err)
			}
		}
		if g.Refunded > 0 {
			if _, err = s.Reverse(ctx, d.OrderID, floodgate.ReversalRefund, g.Refunded, at); err != nil {
				tb.Fatalf("refund %s: %v", out[i].ID, err)
			}
		}
		if g.Disputed > 0 {
			if _, err = s.Reverse(ctx, d.OrderID, floodgate.ReversalDispute, g.Disputed, at); err != nil {
				tb.Fatalf("dispute %s: %v", out[i].ID, err)
			}
		}
		if out[i], err = s.Donation(ctx, d.ID); err != nil {
			tb.Fatalf("Donation(%s): %v", d.ID, err)
		}
	}
	return out
}

// giftKeys makes Give's idempotency keys unique within a test binary,
// whose tests may run in parallel.
var giftKeys atomic.Int64

// CreateCampaign creates a campaign in currency offering schemes, at the
// clock's time.
func CreateCampaign(tb testing.TB, s floodgate.Store, now time.Time, id, currency string, schemes ...string) *floodgate.Campaign {
	tb.Helper()
	c := &floodgate.Campaign{ID: id, Name: "Campaign " + id, Currency: currency, TaxSchemes: schemes,
		CreatedAt: now, UpdatedAt: now}
	c.SetDefaults(now)
	if err := s.CreateCampaign(tb.Context(), c); err != nil {
		tb.Fatalf("CreateCampaign(%s): %v", id, err)
	}
	return c
}

// UKDecl is a Gift Aid declaration.
func UKDecl(first, last, house, postcode string) *floodgate.Declaration {
	return &floodgate.Declaration{Scheme: floodgate.SchemeUKGiftAid, TextVersion: "ga-2026-01",
		FirstName: first, LastName: last, House: house, Postcode: postcode}
}

// IEDecl is a declaration for Ireland's scheme, in text version version.
func IEDecl(first, last, version string) *floodgate.Declaration {
	return &floodgate.Declaration{Scheme: floodgate.SchemeIE, TextVersion: version, FirstName: first, LastName: last}
}

func reportsOf(tb testing.TB, s floodgate.Store) floodgate.Reports {
	tb.Helper()
	r, ok := s.(floodgate.Reports)
	if !ok {
		tb.Fatalf("%T does not implement floodgate.Reports", s)
	}
	return r
}

// testGiftAid: only a campaign's succeeded gifts declared for Gift Aid and
// never reversed in any part are claimed, oldest first, then in line
// order; every other state, scheme and campaign is left out.
func testGiftAid(t *testing.T, open Opener) {
	f := newFixture(t, open)
	r := reportsOf(t, f.store)
	for _, id := range []string{"uk", "uk-other", "uk-empty"} {
		CreateCampaign(t, f.store, Epoch, id, "gbp", floodgate.SchemeUKGiftAid, floodgate.SchemeIE)
	}
	day := func(d, h int) time.Time { return time.Date(2026, 4, d, h, 0, 0, 0, time.UTC) }
	ada := UKDecl("Ada", "Lovelace", "12", "SW1A 1AA")
	ok := func(at time.Time, email string, amount int64) Gift {
		return Gift{At: at, Campaign: "uk", Currency: "gbp", Email: email, Name: "Donor", Amount: amount,
			Decl: ada, Status: floodgate.StatusSucceeded}
	}

	// Given first but created last: the claim follows creation, not seq.
	late := Give(t, f.store, f.clock, ok(day(20, 9), "late@example.org", 2500))[0]
	// One batch: one creation time, so seq decides.
	pair := Give(t, f.store, f.clock, ok(day(5, 9), "first@example.org", 1000), ok(day(5, 9), "second@example.org", 30))
	mid := Give(t, f.store, f.clock, ok(day(10, 23), "mid@example.org", 100_000))[0]

	left := func(g Gift, change func(*Gift)) {
		change(&g)
		Give(t, f.store, f.clock, g)
	}
	base := ok(day(12, 12), "out@example.org", 5000)
	left(base, func(g *Gift) { g.Decl = nil })
	left(base, func(g *Gift) { g.Decl = IEDecl("Ada", "Lovelace", "ie-2026") })
	left(base, func(g *Gift) { g.Refunded = 1 })
	left(base, func(g *Gift) { g.Disputed = 5000 })
	left(base, func(g *Gift) { g.Refunded, g.Disputed = 1000, 1000 })
	left(base, func(g *Gift) { g.Campaign = "uk-other" })
	for _, s := range []floodgate.DonationStatus{floodgate.StatusFailed, floodgate.StatusCanceled,
		floodgate.StatusProcessing, floodgate.StatusRequiresAction, floodgate.StatusAccepted} {
		left(base, func(g *Gift) { g.Status = s })
	}

	got, err := r.GiftAidDonations(f.ctx, "uk")
	if err != nil {
		t.Fatal(err)
	}
	want := []*floodgate.Donation{pair[0], pair[1], mid, late}
	if !slices.Equal(donationIDs(got), donationIDs(want)) {
		t.Fatalf("GiftAidDonations = %v, want %v", emails(got), emails(want))
	}
	for i, d := range got {
		w := want[i]
		if d.Amount != w.Amount || d.Currency != "gbp" || d.Email != w.Email || d.Status != floodgate.StatusSucceeded ||
			!d.CreatedAt.Equal(w.CreatedAt) || d.Declaration == nil || *d.Declaration != *ada {
			t.Fatalf("donation %d = %+v (declaration %+v), want %+v", i, d, d.Declaration, w)
		}
	}

	if none, err := r.GiftAidDonations(f.ctx, "uk-empty"); err != nil || len(none) != 0 {
		t.Fatalf("GiftAidDonations(uk-empty) = %v, %v; want none", donationIDs(none), err)
	}
	_, err = r.GiftAidDonations(f.ctx, "nope")
	wantCode(t, err, floodgate.ENOTFOUND)
}

func emails(ds []*floodgate.Donation) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Email)
	}
	return out
}

// testDonorTotals: a donor is an email address however it is spelt; only
// succeeded gifts in the currency and created in [from, to) count, less
// what was refunded or disputed; the name and declaration are the latest
// given, seq breaking ties within a batch.
func testDonorTotals(t *testing.T, open Opener) {
	f := newFixture(t, open)
	r := reportsOf(t, f.store)
	CreateCampaign(t, f.store, Epoch, "ie-a", "eur", floodgate.SchemeIE)
	CreateCampaign(t, f.store, Epoch, "ie-b", "eur", floodgate.SchemeIE, floodgate.SchemeUKGiftAid)
	CreateCampaign(t, f.store, Epoch, "us", "usd")
	CreateCampaign(t, f.store, Epoch, "uk", "gbp", floodgate.SchemeUKGiftAid)
	date := func(y int, m time.Month, d, h, min, sec, nsec int) time.Time {
		return time.Date(y, m, d, h, min, sec, nsec, time.UTC)
	}
	eur := func(at time.Time, campaign, email, name string, amount int64, decl *floodgate.Declaration) Gift {
		return Gift{At: at, Campaign: campaign, Currency: "eur", Email: email, Name: name, Amount: amount,
			Decl: decl, Status: floodgate.StatusSucceeded}
	}
	aoifeDecl := IEDecl("Aoife", "Murphy", "chy-2025")
	brianA, brianB, brianC := IEDecl("B", "O'Neill", "chy-2025"), IEDecl("Brian", "O'Neill", "chy-2026"),
		IEDecl("Brian", "O Neill", "chy-2026b")

	// Aoife: the same address in three spellings, two campaigns; a later,
	// nameless gift fully refunded still counts as a gift but brings in
	// nothing, and keeps her name.
	Give(t, f.store, f.clock, eur(date(2026, 3, 1, 12, 0, 0, 0), "ie-a", " Aoife@Example.IE ", "Aoife", 25000, aoifeDecl))
	g := eur(date(2026, 6, 1, 12, 0, 0, 0), "ie-b", "aoife@example.ie", "", 1000, nil)
	g.Refunded = 1000
	Give(t, f.store, f.clock, g)
	Give(t, f.store, f.clock, eur(date(2026, 2, 1, 8, 0, 0, 0), "ie-b", "AOIFE@example.ie\t", "Aoife M.", 500, nil))

	// Brian: two gifts in one batch; the later in line gives the name and
	// declaration. A refund, a full dispute, and a gift whose refund and
	// dispute together exceed it (it brings in nothing, not less).
	Give(t, f.store, f.clock, eur(date(2026, 2, 1, 9, 0, 0, 0), "ie-a", "brian@example.ie", "B. O'Neill", 10000, brianA))
	b1 := eur(date(2026, 9, 9, 20, 0, 0, 0), "ie-a", "brian@example.ie", "Brian", 4000, brianB)
	b1.Refunded = 1500
	b2 := eur(date(2026, 9, 9, 20, 0, 0, 0), "ie-a", "brian@example.ie", "Brian O'Neill", 6000, brianC)
	b2.Disputed = 6000
	Give(t, f.store, f.clock, b1, b2)
	b3 := eur(date(2026, 10, 1, 0, 0, 0, 0), "ie-b", "Brian@example.ie", "", 3000, nil)
	b3.Refunded, b3.Disputed = 2000, 2000
	Give(t, f.store, f.clock, b3)

	// Zoë: upper and lower case beyond ASCII are one donor on every engine.
	Give(t, f.store, f.clock, eur(date(2026, 5, 5, 5, 0, 0, 0), "ie-a", "ZOË@example.ie", "Zoë", 5000, nil))
	Give(t, f.store, f.clock, eur(date(2026, 5, 6, 5, 0, 0, 0), "ie-a", "zoë@example.ie", "Zoë", 5000, nil))

	// Edge: the period is [from, to); other currencies never count.
	Give(t, f.store, f.clock, eur(date(2025, 12, 31, 23, 59, 59, 999_999_000), "ie-a", "edge@example.ie", "Edge", 7000, nil))
	Give(t, f.store, f.clock, eur(date(2026, 1, 1, 0, 0, 0, 0), "ie-a", "edge@example.ie", "Edge", 100, nil))
	Give(t, f.store, f.clock, eur(date(2026, 12, 31, 23, 59, 59, 999_999_000), "ie-b", "edge@example.ie", "Edge", 200, nil))
	Give(t, f.store, f.clock, eur(date(2027, 1, 1, 0, 0, 0, 0), "ie-a", "edge@example.ie", "Edge", 9000, nil))
	usd := eur(date(2026, 7, 1, 0, 0, 0, 0), "us", "edge@example.ie", "Edge", 5000, nil)
	usd.Currency = "usd"
	Give(t, f.store, f.clock, usd)
	gbp := eur(date(2026, 7, 2, 0, 0, 0, 0), "uk", "gbp@example.org", "Pound", 4000, UKDecl("Pat", "Pound", "1", "BT1 1AA"))
	gbp.Currency = "gbp"
	Give(t, f.store, f.clock, gbp)

	// Status: nothing but succeeded counts; accepted goes last (see Give).
	for _, s := range []floodgate.DonationStatus{floodgate.StatusFailed, floodgate.StatusCanceled,
		floodgate.StatusProcessing, floodgate.StatusRequiresAction, floodgate.StatusAccepted} {
		g := eur(date(2026, 8, 1, 0, 0, 0, 0), "ie-a", "status@example.ie", "Status", 50000, aoifeDecl)
		g.Status = s
		Give(t, f.store, f.clock, g)
	}

	year, next := date(2026, 1, 1, 0, 0, 0, 0), date(2027, 1, 1, 0, 0, 0, 0)
	got, err := r.DonorTotals(f.ctx, "eur", year, next)
	if err != nil {
		t.Fatal(err)
	}
	wantDonors(t, got, []floodgate.DonorTotal{
		{Email: "aoife@example.ie", Name: "Aoife", Declaration: aoifeDecl, Count: 3, Amount: 25500,
			First: date(2026, 2, 1, 8, 0, 0, 0), Last: date(2026, 6, 1, 12, 0, 0, 0)},
		{Email: "brian@example.ie", Name: "Brian O'Neill", Declaration: brianC, Count: 4, Amount: 12500,
			First: date(2026, 2, 1, 9, 0, 0, 0), Last: date(2026, 10, 1, 0, 0, 0, 0)},
		{Email: "edge@example.ie", Name: "Edge", Count: 2, Amount: 300,
			First: date(2026, 1, 1, 0, 0, 0, 0), Last: date(2026, 12, 31, 23, 59, 59, 999_999_000)},
		{Email: "zoë@example.ie", Name: "Zoë", Count: 2, Amount: 10000,
			First: date(2026, 5, 5, 5, 0, 0, 0), Last: date(2026, 5, 6, 5, 0, 0, 0)},
	})

	got, err = r.DonorTotals(f.ctx, "gbp", year, next)
	if err != nil {
		t.Fatal(err)
	}
	wantDonors(t, got, []floodgate.DonorTotal{{Email: "gbp@example.org", Name: "Pound",
		Declaration: UKDecl("Pat", "Pound", "1", "BT1 1AA"), Count: 1, Amount: 4000,
		First: date(2026, 7, 2, 0, 0, 0, 0), Last: date(2026, 7, 2, 0, 0, 0, 0)}})

	// The period's end is excluded, its start included.
	got, err = r.DonorTotals(f.ctx, "eur", date(2025, 12, 31, 23, 59, 59, 999_999_000), year)
	if err != nil {
		t.Fatal(err)
	}
	wantDonors(t, got, []floodgate.DonorTotal{{Email: "edge@example.ie", Name: "Edge", Count: 1, Amount: 7000,
		First: date(2025, 12, 31, 23, 59, 59, 999_999_000), Last: date(2025, 12, 31, 23, 59, 59, 999_999_000)}})

	if got, err := r.DonorTotals(f.ctx, "eur", date(2030, 1, 1, 0, 0, 0, 0), date(2031, 1, 1, 0, 0, 0, 0)); err != nil || len(got) != 0 {
		t.Fatalf("DonorTotals of an empty year = %+v, %v; want none", got, err)
	}
}

func wantDonors(tb testing.TB, got, want []floodgate.DonorTotal) {
	tb.Helper()
	show := func(ts []floodgate.DonorTotal) string {
		s := ""
		for _, t := range ts {
			s += fmt.Sprintf("\n  %s %q n=%d amount=%d %s..%s decl=%+v", t.Email, t.Name, t.Count, t.Amount,
				t.First.Format(time.RFC3339Nano), t.Last.Format(time.RFC3339Nano), t.Declaration)
		}
		return s
	}
	if len(got) != len(want) {
		tb.Fatalf("DonorTotals:%s\nwant:%s", show(got), show(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		sameDecl := g.Declaration == nil && w.Declaration == nil ||
			g.Declaration != nil && w.Declaration != nil && *g.Declaration == *w.Declaration
		if g.Email != w.Email || g.Name != w.Name || g.Count != w.Count || g.Amount != w.Amount ||
			!g.First.Equal(w.First) || !g.Last.Equal(w.Last) || !sameDecl {
			tb.Fatalf("DonorTotals:%s\nwant:%s", show(got), show(want))
		}
	}
}
