package dispatch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/sandbox"
	"github.com/floodgate/floodgate/internal/sqlite"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

// rig is a dispatcher with real parts: a SQLite store, the sandbox over
// real HTTP, and the stripe-go adapter pointed at it.
type rig struct {
	t     *testing.T
	ctx   context.Context
	store *sqlite.Store
	sb    *sandbox.Server
	disp  *Dispatcher
	n     int
}

func newRig(t *testing.T, sbOpts sandbox.Options, change func(*Options)) *rig {
	t.Helper()
	return newRigWith(t, sbOpts, nil, change)
}

// newRigWith is newRig whose dispatcher sees the store through wrap (nil:
// as it is), for stores that fail on purpose.
func newRigWith(t *testing.T, sbOpts sandbox.Options, wrap func(floodgate.Store) floodgate.Store, change func(*Options)) *rig {
	t.Helper()
	old := confirmGap
	confirmGap = 50 * time.Millisecond
	t.Cleanup(func() { confirmGap = old })
	ctx := context.Background()
	store, err := sqlite.Open(ctx, sqlite.Options{Path: filepath.Join(t.TempDir(), "f.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	now := time.Now().UTC()
	c := &floodgate.Campaign{ID: "c", Name: "C", Currency: "eur", CreatedAt: now, UpdatedAt: now}
	c.SetDefaults(now)
	if err := store.CreateCampaign(ctx, c); err != nil {
		t.Fatal(err)
	}
	if sbOpts.Seed == 0 {
		sbOpts.Seed = 42
	}
	sb, err := sandbox.New(sbOpts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { srv.Close(); _ = sb.Close() })
	prov, err := fgstripe.New(fgstripe.Options{SecretKey: "sk_test_dispatch", APIBase: srv.URL, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Rate: 100, GlobalRate: 200, Workers: 8, Queue: 32, Claim: 16, Lease: time.Minute, CallTimeout: 5 * time.Second,
		ActionTimeout: time.Hour, ReleaseAllOnStart: true, Poll: 10 * time.Millisecond, Policy: DefaultPolicy,
		DeferWait: 100 * time.Millisecond}
	opts.Policy.Base, opts.Policy.Cap = 10*time.Millisecond, 200*time.Millisecond
	if change != nil {
		change(&opts)
	}
	var seen floodgate.Store = store
	if wrap != nil {
		seen = wrap(store)
	}
	d := New(seen, prov, opts)
	if err := d.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Stop)
	return &rig{t: t, ctx: ctx, store: store, sb: sb, disp: d}
}

// accept stores n donations paying with pm and returns their ids.
func (r *rig) accept(n int, pm string) []string {
	r.t.Helper()
	var ds []floodgate.Intake
	for range n {
		r.n++
		key := fmt.Sprintf("k%d", r.n)
		h := sha256.Sum256([]byte(key))
		ds = append(ds, &floodgate.Donation{CampaignID: "c", IdempotencyKey: key, RequestHash: h[:], Amount: 1000 + int64(r.n),
			Currency: "eur", Email: "d@example.org", PaymentMethod: pm})
	}
	res, err := r.store.Accept(r.ctx, ds)
	if err != nil {
		r.t.Fatal(err)
	}
	var ids []string
	for _, x := range res {
		ids = append(ids, x.Donation().ID)
	}
	r.disp.Wake()
	return ids
}

// wait returns the donations once each has reached want.
func (r *rig) wait(ids []string, want floodgate.DonationStatus) map[string]*floodgate.Donation {
	r.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out := map[string]*floodgate.Donation{}
		for _, id := range ids {
			d, err := r.store.Donation(r.ctx, id)
			if err != nil {
				r.t.Fatal(err)
			}
			if d.Status == want {
				out[id] = d
			}
		}
		if len(out) == len(ids) {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d donations reached %s in 2 minutes", len(out), len(ids), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// chargedOnce checks the provider's ledger: exactly one succeeded
// PaymentIntent for each id, none charged twice.
func (r *rig) chargedOnce(ids []string) {
	r.t.Helper()
	l := r.sb.Ledger()
	if len(l.ChargedTwice) > 0 {
		r.t.Fatalf("charged twice: %v", l.ChargedTwice)
	}
	succeeded := map[string]int{}
	for _, e := range l.PaymentIntents {
		if e.Status == "succeeded" {
			succeeded[e.DonationID]++
		}
	}
	for _, id := range ids {
		if succeeded[id] != 1 {
			r.t.Fatalf("donation %s: %d succeeded PaymentIntents (ledger %v)", id, succeeded[id], l.ByDonation[id])
		}
	}
}

// TestLostAnswersChargeOnce: half the provider's answers are lost after
// the charge; resending the same key returns the stored answer.
func TestLostAnswersChargeOnce(t *testing.T) {
	r := newRig(t, sandbox.Options{LoseRate: 0.5}, nil)
	ids := r.accept(40, "pm_card_visa")
	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
	if r.sb.Ledger().Counts.LostAnswers == 0 {
		t.Fatal("no answer was lost: the test proved nothing")
	}
}

// TestStoredServerErrorsAreLookedUp: the provider answers half the
// charges with a 500 it stores under the key; resending cannot tell, so
// the dispatcher looks the payment up, finds none, and charges with a new
// key generation, exactly once.
func TestStoredServerErrorsAreLookedUp(t *testing.T) {
	r := newRig(t, sandbox.Options{FailRate: 0.5}, nil)
	ids := r.accept(30, "pm_card_visa")
	got := r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
	newKeys := 0
	for _, d := range got {
		newKeys += d.Attempt
	}
	if newKeys == 0 || r.sb.Ledger().Counts.InjectedFailures == 0 {
		t.Fatalf("no new key generation after %d injected 500s: the lookup path did not run", r.sb.Ledger().Counts.InjectedFailures)
	}
}

// TestForgottenKeyIsLookedUp: every charge executes and its answer is
// lost, then the provider is out for longer than it keeps keys. Past the
// retention the dispatcher must never resend a key (the provider would
// charge again) but look the payment up.
func TestForgottenKeyIsLookedUp(t *testing.T) {
	// The provider keeps keys for 6 s, the dispatcher trusts them for
	// 0.8 s: the gap is the margin a stalled machine has between checking
	// a key's age and the request reaching the provider, wide enough that
	// a busy machine never spends it.
	r := newRig(t, sandbox.Options{LoseRate: 1, IdempotencyRetention: 6 * time.Second}, func(o *Options) {
		o.Policy.KeyRetention = 800 * time.Millisecond
		o.Policy.Base, o.Policy.Cap = 50*time.Millisecond, 200*time.Millisecond
	})
	ids := r.accept(20, "pm_card_visa")
	deadline := time.Now().Add(time.Minute)
	for len(r.sb.Ledger().PaymentIntents) < len(ids) {
		if time.Now().After(deadline) {
			t.Fatal("the charges never executed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cfg := r.sb.Config()
	cfg.LoseRate, cfg.Outage = 0, sandbox.OutageReset
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(6500 * time.Millisecond) // longer than the provider keeps keys
	cfg.Outage = sandbox.OutageNone
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
}

// TestExpiredActionsCanceledDespiteFailures: gifts left in
// requires_action are canceled at the provider even when many cancels fail
// with 500s stored under their keys: each retry takes a fresh key.
func TestExpiredActionsCanceledDespiteFailures(t *testing.T) {
	// The action timeout is long, and the dispatcher's clock jumps past it
	// once every gift waits for its donor: a short timeout would race the
	// charges themselves on a slow machine.
	clock := &clocktest.Shifted{}
	r := newRig(t, sandbox.Options{}, func(o *Options) {
		o.Clock, o.ActionTimeout, o.CancelBackoff = clock, time.Hour, 20*time.Millisecond
	})
	ids := r.accept(10, "pm_card_authenticationRequired")
	r.wait(ids, floodgate.StatusRequiresAction)
	// From now on, most writes fail with a stored 500.
	cfg := r.sb.Config()
	cfg.FailRate = 0.6
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	clock.Jump(2 * time.Hour)
	r.wait(ids, floodgate.StatusCanceled)
	if r.sb.Ledger().Counts.InjectedFailures == 0 {
		t.Fatal("no cancel failed: the test proved nothing")
	}
	for _, e := range r.sb.Ledger().PaymentIntents {
		if e.Status != "canceled" {
			t.Fatalf("PaymentIntent %s is %s at the provider", e.ID, e.Status)
		}
	}
}

// TestDeclineRecordedWithGenericCode: a card the bank refuses as stolen
// ends failed with the generic code only.
func TestDeclineRecordedWithGenericCode(t *testing.T) {
	r := newRig(t, sandbox.Options{}, nil)
	ids := r.accept(1, "pm_card_chargeDeclinedStolenCard")
	d := r.wait(ids, floodgate.StatusFailed)[ids[0]]
	if d.FailureCode != "card_declined" || d.PaymentIntentID == "" {
		t.Fatalf("failed donation = %+v", d)
	}
}

// TestBreakerProbesWithNothingInHand: every gift the dispatcher held was
// put off (its lookups met the outage too) while the breaker opened. Once
// the cool-down passes, the dispatcher claims a gift to probe with; it
// must not wait for a restart to charge again.
func TestBreakerProbesWithNothingInHand(t *testing.T) {
	// The provider answers every request 503: a charge's outcome is
	// unknown, its lookups fail too, and the gift is put off.
	r := newRig(t, sandbox.Options{}, nil)
	cfg := r.sb.Config()
	cfg.Outage = sandbox.OutageUnavailable
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ids := r.accept(1, "pm_card_visa")
	deadline := time.Now().Add(2 * time.Minute)
	for {
		state, _ := r.disp.breaker.status()
		if state == breakerOpen && r.disp.inFlight.Load() == 0 {
			break // open, and no gift in hand to probe with
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker never opened with nothing in hand (state %d, in flight %d)", state, r.disp.inFlight.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cfg.Outage = sandbox.OutageNone
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
}

// flakyStore fails the first call of NewKeyGeneration and of Defer, as a
// database failing over would.
type flakyStore struct {
	floodgate.Store
	newKeyFailed, deferFailed atomic.Bool
}

var errFlaky = errors.New("store: connection reset (injected)")

func (s *flakyStore) NewKeyGeneration(ctx context.Context, owner, id string, attempt int, pi string, now time.Time) (*floodgate.Donation, error) {
	if s.newKeyFailed.CompareAndSwap(false, true) {
		return nil, errFlaky
	}
	return s.Store.NewKeyGeneration(ctx, owner, id, attempt, pi, now)
}

func (s *flakyStore) Defer(ctx context.Context, owner, id string, until time.Time) error {
	if s.deferFailed.CompareAndSwap(false, true) {
		return errFlaky
	}
	return s.Store.Defer(ctx, owner, id, until)
}

// TestStoreFailureWhileDeferring: after a stored 500 the lookups find no
// payment, but the store fails as the new key is recorded, and again as
// the gift is put off. The dispatcher goes on extending the leases of what
// it claimed, so a put-off it did not record would hold the gift forever:
// it retries, and the gift is charged once.
func TestStoreFailureWhileDeferring(t *testing.T) {
	flaky := &flakyStore{}
	r := newRigWith(t, sandbox.Options{FailRate: 0.5}, func(s floodgate.Store) floodgate.Store {
		flaky.Store = s
		return flaky
	}, nil)
	ids := r.accept(20, "pm_card_visa")
	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
	if !flaky.newKeyFailed.Load() || !flaky.deferFailed.Load() {
		t.Fatalf("the store never failed (new key %v, defer %v): the test proved nothing", flaky.newKeyFailed.Load(), flaky.deferFailed.Load())
	}
}

// TestScreenFailsOnlyGiftsNeverSent: a gift the card-testing screen
// refuses is failed without any provider call, with a note saying so; a
// gift resumed from a dispatcher that died may have been charged, so it
// is never screened but charged (or looked up) under its key. Every
// settlement is told to Outcome.
func TestScreenFailsOnlyGiftsNeverSent(t *testing.T) {
	var screened atomic.Int64
	outcomes := make(chan *floodgate.Donation, 8)
	r := newRig(t, sandbox.Options{}, func(o *Options) {
		o.Screen = func(*floodgate.Donation) bool { screened.Add(1); return false }
		o.Outcome = func(d *floodgate.Donation) { outcomes <- d }
	})
	if err := r.disp.Pause(r.ctx, true); err != nil {
		t.Fatal(err)
	}
	ids := r.accept(2, "pm_card_visa")
	// The first is claimed by a dispatcher that dies: its lease runs out
	// and this one resumes it, not knowing whether it was sent.
	past := time.Now().Add(-5 * time.Minute)
	if got, err := r.store.ClaimDonations(r.ctx, "dead", 1, past, time.Minute); err != nil || len(got) != 1 || got[0].ID != ids[0] {
		t.Fatalf("claim as the dead dispatcher: %v %v", got, err)
	}
	if err := r.disp.Pause(r.ctx, false); err != nil {
		t.Fatal(err)
	}
	resumed := r.wait(ids[:1], floodgate.StatusSucceeded)[ids[0]]
	fresh := r.wait(ids[1:], floodgate.StatusFailed)[ids[1]]
	if fresh.FailureCode != "processing_error" || fresh.PaymentIntentID != "" {
		t.Fatalf("screened gift = %+v", fresh)
	}
	if n := len(r.sb.Ledger().ByDonation[ids[1]]); n != 0 {
		t.Fatalf("the screened gift reached the provider %d times", n)
	}
	hist, err := r.store.History(r.ctx, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if last := hist[len(hist)-1]; !strings.Contains(last.Note, "never sent") || !strings.Contains(last.Note, "card-testing defence, address") {
		t.Fatalf("history of the screened gift: %+v", hist)
	}
	if screened.Load() != 1 {
		t.Fatalf("the screen was asked %d times, want once (the resumed gift is never asked)", screened.Load())
	}
	r.chargedOnce([]string{resumed.ID})
	seen := map[string]floodgate.DonationStatus{}
	for range 2 {
		select {
		case d := <-outcomes:
			seen[d.ID] = d.Status
		case <-time.After(time.Minute):
			t.Fatalf("outcomes told: %v", seen)
		}
	}
	if seen[ids[0]] != floodgate.StatusSucceeded || seen[ids[1]] != floodgate.StatusFailed {
		t.Fatalf("outcomes told: %v", seen)
	}
}
