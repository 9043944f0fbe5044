package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
)

// sweepWindow is the window the sweep cases hand orders to the sweeps
// with: whole seconds, as the provider's created is.
var sweepWindow = floodgate.Window{From: Epoch.Add(-2 * time.Second), To: Epoch.Add(3 * time.Second)}

func (f *fixture) history(id string) []floodgate.StatusChange {
	f.tb.Helper()
	h, err := f.store.History(f.ctx, id)
	if err != nil {
		f.tb.Fatalf("History(%s): %v", id, err)
	}
	return h
}

// markUnknown hands o, held by its claim, to the sweeps with window w.
func (f *fixture) markUnknown(o *floodgate.PaymentOrder, w floodgate.Window) *floodgate.PaymentOrder {
	f.tb.Helper()
	got, err := f.store.MarkUnknown(f.ctx, o.Claim(), w, "server", f.clock.Now())
	if err != nil {
		f.tb.Fatalf("MarkUnknown(%s): %v", o.ID, err)
	}
	return got
}

// recordSweep records a sweep that started at started and wants n
// recorded.
func (f *fixture) recordSweep(started time.Time, n int, swept ...floodgate.SweptOrder) {
	f.tb.Helper()
	got, err := f.store.RecordSweep(f.ctx, swept, floodgate.SweepStartAt(started), f.clock.Now())
	if err != nil || got != n {
		f.tb.Fatalf("RecordSweep(%+v) = %d, %v; want %d recorded", swept, got, err, n)
	}
}

// wantOrder fails tb unless got is want, field for field.
func wantOrder(tb testing.TB, what string, got, want *floodgate.PaymentOrder) {
	tb.Helper()
	if g, w := normalized(got), normalized(want); !reflect.DeepEqual(g, w) {
		tb.Fatalf("%s:\n%+v\nwant\n%+v", what, g, w)
	}
}

func wantUnknowns(tb testing.TB, f *fixture, n int, want ...string) {
	tb.Helper()
	got, err := f.store.Unknowns(f.ctx, n)
	if err != nil || !slices.Equal(ids(got), want) {
		tb.Fatalf("Unknowns(%d) = %v, %v; want %v", n, ids(got), err, want)
	}
}

func seenAs(o *floodgate.PaymentOrder) floodgate.SweptOrder {
	return floodgate.SweptOrder{ID: o.ID, Attempt: o.Attempt, Sweeps: o.Sweeps}
}

// testUnknown: an order whose outcome is unknown leaves the workers'
// line: only the claim that holds it hands it to the sweeps, and then no
// claim takes it however long it waits, a take-back leaves it alone, and
// nothing its former holder sends changes it. Unknowns lists such orders
// by window, then by place in line; they are not waiting.
func testUnknown(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000, 3000)
	claimed := f.claim("w", 3)
	if !slices.Equal(ids(claimed), donationIDs(ds)) {
		t.Fatalf("claim = %v", ids(claimed))
	}
	f.clock.Advance(time.Second)
	now := f.clock.Now()

	// Refused: a claim that does not hold the order, a window that ends
	// before it begins, an order that does not exist.
	stale := claimed[0].Claim()
	stale.Token += 1000
	_, err := f.store.MarkUnknown(f.ctx, stale, sweepWindow, "server", now)
	wantCode(t, err, floodgate.ESTATE)
	_, err = f.store.MarkUnknown(f.ctx, claimed[0].Claim(), floodgate.Window{From: sweepWindow.To, To: sweepWindow.From}, "server", now)
	wantCode(t, err, floodgate.EINVALID)
	_, err = f.store.MarkUnknown(f.ctx, floodgate.Claim{Order: "po_nope", Seq: -1, Token: 1}, sweepWindow, "server", now)
	wantCode(t, err, floodgate.ENOTFOUND)
	wantOrder(t, "after refused hand-overs", f.order(ds[0]), claimed[0])

	// The holder hands it over: its claim ends, and it keeps its status,
	// key and token.
	before := len(f.history(ds[0].ID))
	o := f.markUnknown(claimed[0], sweepWindow)
	want := *claimed[0]
	want.ClaimedBy, want.LeaseUntil, want.UpdatedAt = "", nil, now
	want.UnknownFrom, want.UnknownTo, want.UnknownCause = &sweepWindow.From, &sweepWindow.To, "server"
	wantOrder(t, "handed to the sweeps", o, &want)
	wantOrder(t, "read back", f.order(ds[0]), &want)
	h := f.history(ds[0].ID)
	if len(h) != before+1 || h[len(h)-1].Status != floodgate.StatusProcessing || !h[len(h)-1].At.Equal(now) ||
		h[len(h)-1].Note != "outcome of key generation 0 unknown: swept for PaymentIntents created in "+sweepWindow.String() {
		t.Fatalf("history = %+v", h)
	}
	_, err = f.store.MarkUnknown(f.ctx, claimed[0].Claim(), sweepWindow, "server", now)
	wantCode(t, err, floodgate.ESTATE)
	wantTotals(t, f.totals("c"), 0, 0, 6000, 3, 0)

	// The others, with windows that order the list: the earliest window
	// first, then the place in line.
	early := floodgate.Window{From: sweepWindow.From.Add(-time.Minute), To: sweepWindow.To}
	late := floodgate.Window{From: sweepWindow.From, To: sweepWindow.To.Add(time.Minute)}
	f.markUnknown(claimed[2], late)
	f.markUnknown(claimed[1], early)
	wantUnknowns(t, f, 10, ds[1].ID, ds[0].ID, ds[2].ID)
	wantUnknowns(t, f, 2, ds[1].ID, ds[0].ID)
	wantUnknowns(t, f, 0)
	wantUnknowns(t, f, -1)
	unknown := make([]*floodgate.PaymentOrder, len(ds))
	for i, d := range ds {
		unknown[i] = f.order(d)
	}
	untouched := func(what string) {
		t.Helper()
		for i, d := range ds {
			wantOrder(t, what, f.order(d), unknown[i])
		}
	}

	// Not waiting: the line's head is the next gift accepted.
	b, err := f.store.Backlog(f.ctx)
	if err != nil || b.Waiting != 0 || b.HeadSeq != 0 {
		t.Fatalf("Backlog with only unknown orders = %+v, %v", b, err)
	}
	next := f.acceptNew("c", 500)[0]
	if b, err := f.store.Backlog(f.ctx); err != nil || b.Waiting != 1 || b.HeadSeq != next.Seq {
		t.Fatalf("Backlog = %+v, %v; want only %s waiting", b, err, next.ID)
	}

	// No claim takes them, however long they wait; a take-back leaves
	// them alone.
	f.clock.Advance(24 * time.Hour)
	if got := f.claim("other", 10); !slices.Equal(ids(got), []string{next.ID}) {
		t.Fatalf("claim a day later = %v, want only %s", ids(got), next.ID)
	}
	if err := f.store.TakeBackClaims(f.ctx); err != nil {
		t.Fatal(err)
	}
	untouched("after a take-back")
	if got := f.claim("other", 10); !slices.Equal(ids(got), []string{next.ID}) {
		t.Fatalf("claim after a take-back = %v, want only %s", ids(got), next.ID)
	}

	// Nothing the former holder sends under its claims changes them.
	var held []floodgate.Claim
	for _, c := range claimed {
		held = append(held, c.Claim())
	}
	if n, err := f.store.ExtendClaims(f.ctx, held, time.Hour); err != nil || n != 0 {
		t.Fatalf("ExtendClaims of the handed-over claims = %d, %v", n, err)
	}
	if err := f.store.ReleaseClaims(f.ctx, held); err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.store.Defer(f.ctx, held[0], time.Minute), floodgate.ESTATE)
	_, err = f.store.NewKeyGeneration(f.ctx, held[0], 0, "", f.clock.Now())
	wantCode(t, err, floodgate.ESTATE)
	untouched("after the former holder's writes")
	if got := f.claim("other", 10); len(got) != 0 {
		t.Fatalf("claim = %v, want none", ids(got))
	}
	wantUnknowns(t, f, 10, ds[1].ID, ds[0].ID, ds[2].ID)
	wantTotals(t, f.totals("c"), 0, 0, 6500, 4, 0)
}

// testRecordSweep: a sweep is recorded once for each order as the sweep
// saw it; an order that changed since, is gone, or has a later sweep
// recorded is skipped, and sweeps recorded at once count each order once.
func testRecordSweep(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000, 3000)
	var os []*floodgate.PaymentOrder
	for _, o := range f.claim("w", 3) {
		os = append(os, f.markUnknown(o, sweepWindow))
	}
	lines := len(f.history(ds[0].ID))
	first, second := Epoch.Add(10*time.Second), Epoch.Add(14*time.Second)

	f.clock.Advance(time.Second)
	moved := seenAs(os[2])
	moved.Attempt++
	f.recordSweep(first, 2, seenAs(os[0]), seenAs(os[1]), moved, floodgate.SweptOrder{ID: "po_nope"})
	for i, o := range os[:2] {
		want := *o
		want.Sweeps, want.SweptAt, want.UpdatedAt = 1, &first, f.clock.Now()
		wantOrder(t, fmt.Sprintf("order %d after a sweep", i), f.order(ds[i]), &want)
	}
	wantOrder(t, "an order at another generation", f.order(ds[2]), os[2])
	if h := f.history(ds[0].ID); len(h) != lines {
		t.Fatalf("a sweep added history: %+v", h[lines:])
	}
	f.recordSweep(first, 0)
	// The same record again: the count has moved on.
	f.recordSweep(first, 0, seenAs(os[0]))
	// A sweep that started no later than the one recorded.
	f.recordSweep(first, 0, floodgate.SweptOrder{ID: os[0].ID, Sweeps: 1})

	// Sweeps recorded at once, each having seen the orders after the
	// first sweep, naming them in either order: each order counts one.
	var (
		wg    sync.WaitGroup
		total int
		mu    sync.Mutex
		errs  []error
	)
	a, b := floodgate.SweptOrder{ID: os[0].ID, Sweeps: 1}, floodgate.SweptOrder{ID: os[1].ID, Sweeps: 1}
	for i := range 8 {
		swept := []floodgate.SweptOrder{a, b}
		if i%2 == 1 {
			swept = []floodgate.SweptOrder{b, a}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := f.store.RecordSweep(f.ctx, swept, floodgate.SweepStartAt(second), f.clock.Now())
			mu.Lock()
			defer mu.Unlock()
			total += n
			if err != nil {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if total != 2 || len(errs) != 0 {
		t.Fatalf("sweeps recorded at once counted %d (errors %v), want each of the 2 orders once", total, errs)
	}
	for i := range 2 {
		if o := f.order(ds[i]); o.Sweeps != 2 || !o.SweptAt.Equal(second) {
			t.Fatalf("order %d after two sweeps = %+v", i, o)
		}
	}
	// The same order twice in one record counts once.
	f.recordSweep(Epoch.Add(20*time.Second), 1, seenAs(os[2]), seenAs(os[2]))
	if o := f.order(ds[2]); o.Sweeps != 1 {
		t.Fatalf("named twice in one sweep: %+v", o)
	}
	wantTotals(t, f.totals("c"), 0, 0, 6000, 3, 0)
}

// testSweptNewKey: two sweeps that found nothing give an unknown order a
// new key and put it back in line, where the next claim takes it at once
// and stamps its key as first sent; a PaymentIntent found is kept for the
// new key to confirm; a settlement from elsewhere ends an unknown outcome,
// and the former holder's own is refused and kept as a late result.
func testSweptNewKey(t *testing.T, open Opener) {
	f := newFixture(t, open)
	f.campaign("c")
	ds := f.acceptNew("c", 1000, 2000, 3000)
	claimed := f.claim("w", 3)
	var os []*floodgate.PaymentOrder
	for _, o := range claimed {
		os = append(os, f.markUnknown(o, sweepWindow))
	}
	first, second := Epoch.Add(10*time.Second), Epoch.Add(14*time.Second)

	newKey := func(i, from int, pi string) (*floodgate.PaymentOrder, error) {
		return f.store.SweptNewKey(f.ctx, os[i].ID, from, pi, f.clock.Now())
	}
	_, err := newKey(0, 0, "")
	wantCode(t, err, floodgate.ESTATE) // no sweep yet
	f.recordSweep(first, 2, seenAs(os[0]), seenAs(os[1]))
	_, err = newKey(0, 0, "")
	wantCode(t, err, floodgate.ESTATE) // one sweep proves nothing
	f.recordSweep(second, 1, floodgate.SweptOrder{ID: os[0].ID, Sweeps: 1})
	_, err = newKey(0, 1, "")
	wantCode(t, err, floodgate.ESTATE) // not at that generation
	_, err = f.store.SweptNewKey(f.ctx, "po_nope", 0, "", f.clock.Now())
	wantCode(t, err, floodgate.ENOTFOUND)

	f.clock.Advance(time.Second)
	now := f.clock.Now()
	o, err := newKey(0, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	want := *os[0]
	want.Attempt, want.KeySince, want.Format, want.LeaseUntil, want.UpdatedAt = 1, nil, floodgate.CurrentFormat, &now, now
	want.UnknownFrom, want.UnknownTo, want.Sweeps, want.SweptAt, want.UnknownCause, want.Absences = nil, nil, 0, nil, "", 1
	wantOrder(t, "a new key after two sweeps", o, &want)
	h := f.history(ds[0].ID)
	if last := h[len(h)-1]; last.Status != floodgate.StatusProcessing || !last.At.Equal(now) ||
		last.Note != "new idempotency key (generation 1): no payment exists for generation 0 (2 sweeps of "+sweepWindow.String()+" found none)" {
		t.Fatalf("history = %+v", h)
	}
	_, err = newKey(0, 0, "")
	wantCode(t, err, floodgate.ESTATE) // moved on already
	wantUnknowns(t, f, 10, ds[1].ID, ds[2].ID)

	// Back in line: the next claim takes it at once, under a new token,
	// its new key stamped as first sent now.
	got := f.claim("next", 10)
	if len(got) != 1 || got[0].ID != os[0].ID {
		t.Fatalf("claim after the new key = %v, want %s", ids(got), os[0].ID)
	}
	if g := got[0]; g.Attempt != 1 || g.KeySince == nil || !g.KeySince.Equal(now) || g.ClaimedBy != "next" ||
		g.Token <= claimed[0].Token || !g.Held(g.Token, now) || g.Status != floodgate.StatusProcessing {
		t.Fatalf("claimed with its new key: %+v", g)
	}

	// The former holder of an unknown order reports late: refused, and
	// kept as a history line; the order is still the sweeps'.
	lines := len(f.history(ds[1].ID))
	f.clock.Advance(time.Second)
	_, err = f.store.Settle(f.ctx, floodgate.Settlement{OrderID: os[1].ID, Token: claimed[1].Token, Status: floodgate.StatusSucceeded,
		PaymentIntentID: "pi_late", At: f.clock.Now()})
	wantCode(t, err, floodgate.ESTATE)
	unknown := f.order(ds[1])
	if unknown.UnknownFrom == nil || unknown.Sweeps != 1 || unknown.Status != floodgate.StatusProcessing {
		t.Fatalf("after a late result: %+v", unknown)
	}
	h = f.history(ds[1].ID)
	if len(h) != lines+1 || h[lines].Note != fmt.Sprintf("late result from a claim no longer held (fencing token %d): succeeded (pi_late); not applied", claimed[1].Token) {
		t.Fatalf("history after a late result = %+v", h)
	}

	// A PaymentIntent a sweep found awaiting its confirmation: a new key
	// to confirm it, with no sweep needed.
	o, err = newKey(2, 0, "pi_found")
	if err != nil || o.Attempt != 1 || o.PaymentIntentID != "pi_found" || o.UnknownFrom != nil || o.KeySince != nil {
		t.Fatalf("a new key for a PaymentIntent found = %+v, %v", o, err)
	}
	if h := f.history(ds[2].ID); h[len(h)-1].Note != "new idempotency key (generation 1) to confirm pi_found" {
		t.Fatalf("history = %+v", h)
	}
	if got := f.claim("next", 10); len(got) != 1 || got[0].ID != os[2].ID || got[0].PaymentIntentID != "pi_found" ||
		got[0].KeySince == nil || !got[0].KeySince.Equal(f.clock.Now()) {
		t.Fatalf("claim after a PaymentIntent found = %+v", got)
	}

	// A settlement from elsewhere (a webhook) ends an unknown outcome,
	// with its effect on the totals.
	f.clock.Advance(time.Second)
	o = f.settle(floodgate.Settlement{OrderID: os[1].ID, Status: floodgate.StatusSucceeded, PaymentIntentID: "pi_webhook"})
	if o.Status != floodgate.StatusSucceeded || o.PaymentIntentID != "pi_webhook" || o.UnknownFrom != nil || o.UnknownTo != nil ||
		o.Sweeps != 0 || o.SweptAt != nil || o.ClaimedBy != "" || o.LeaseUntil != nil {
		t.Fatalf("settled from elsewhere: %+v", o)
	}
	wantOrder(t, "read back", f.order(ds[1]), o)
	wantUnknowns(t, f, 10)
	wantTotals(t, f.totals("c"), 2000, 1, 4000, 2, 0)
}

// testNamedLeases: one owner at a time holds a named lease, judged on the
// store's clock; its holder renews it, and gives it up to whoever asks
// next; one that ran out is anyone's.
func testNamedLeases(t *testing.T, open Opener) {
	f := newFixture(t, open)
	take := func(name, owner string, want bool) {
		t.Helper()
		ok, err := f.store.TakeLease(f.ctx, name, owner, time.Minute)
		if err != nil || ok != want {
			t.Fatalf("TakeLease(%s, %s) at %s = %v, %v; want %v", name, owner, f.clock.Now().Sub(Epoch), ok, err, want)
		}
	}
	take("sweeper", "a", true)
	take("sweeper", "b", false)
	take("other", "b", true)
	// Renewed by its holder half way through, it outlasts its first
	// minute.
	f.clock.Advance(30 * time.Second)
	take("sweeper", "a", true)
	f.clock.Advance(45 * time.Second)
	take("sweeper", "b", false)
	// It runs out the moment its minute from the renewal ends.
	f.clock.Advance(15 * time.Second)
	take("sweeper", "b", true)
	take("sweeper", "a", false)
	// Only the holder gives it up.
	if err := f.store.ReleaseLease(f.ctx, "sweeper", "a"); err != nil {
		t.Fatal(err)
	}
	take("sweeper", "a", false)
	if err := f.store.ReleaseLease(f.ctx, "sweeper", "b"); err != nil {
		t.Fatal(err)
	}
	take("sweeper", "a", true)
	if err := f.store.ReleaseLease(f.ctx, "never-taken", "a"); err != nil {
		t.Fatal(err)
	}

	// Taken at once by many: one gets it.
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		won []string
	)
	for i := range 8 {
		owner := fmt.Sprintf("node-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := f.store.TakeLease(f.ctx, "race", owner, time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				won = append(won, "error: "+err.Error())
			} else if ok {
				won = append(won, owner)
			}
		}()
	}
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("taken at once by 8 owners: %v, want exactly one", won)
	}
	take("race", won[0], true)
}
