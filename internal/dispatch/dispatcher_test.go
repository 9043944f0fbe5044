package dispatch

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/sandbox"
)

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
//
// The order of events is arranged, not timed. The provider and the
// dispatcher share a clock that the test moves: the provider keeps keys
// 24 h, the dispatcher trusts them 20 h. The provider lets each key's
// first request execute and loses its answer, then holds the request
// that resends the key (the dispatcher may, while the key is young).
// Once every gift has its resend held, every worker with a gift waits on
// the provider, so none stands between checking its key's age and
// sending: the clock jumps 25 h, and the held resends are dropped
// unexecuted (the outage). Any request with an old key from then on
// reaches a provider that has forgotten the key, and charges again.
func TestForgottenKeyIsLookedUp(t *testing.T) {
	// Fewer gifts than the breaker's threshold: the lost answers alone
	// never open it, so no resend waits behind it rather than at the
	// provider.
	n := newBreaker().threshold - 1
	clock := &clocktest.Shifted{}
	var (
		mu       sync.Mutex
		sent     = map[string]bool{} // keys whose first request executed
		held     = map[string]bool{} // keys with a resend held
		expired  bool                // the clock has passed the retention
		resent   []string            // keys sent again past the retention
		allHeld  = make(chan struct{})
		release  = make(chan struct{})
		released sync.Once
	)
	arrive := func(r *http.Request) bool {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/payment_intents" {
			return true // lookups go through
		}
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		switch {
		case !sent[key]:
			sent[key] = true
			mu.Unlock()
			return true // executes; its answer is lost
		case expired:
			resent = append(resent, key)
			mu.Unlock()
			return true // executes again: the provider has forgotten the key
		}
		held[key] = true
		if len(held) == n {
			close(allHeld)
		}
		mu.Unlock()
		<-release
		return false // the provider is out: nothing executes
	}
	r := newRig(t, sandbox.Options{LoseRate: 1, Clock: clock, Arrive: arrive}, func(k *knobs) {
		k.Dispatch.Clock = clock
		// A held resend waits as long as the machine takes to send the
		// others; a call given up meanwhile would be sent again unseen.
		k.CallTimeout = 10 * time.Minute
	})
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	if r.disp.opts.Workers < n || r.disp.opts.Policy.KeyRetention >= sandbox.DefaultIdempotencyRetention {
		t.Fatalf("%d workers for %d gifts; keys trusted %s, kept %s", r.disp.opts.Workers, n,
			r.disp.opts.Policy.KeyRetention, sandbox.DefaultIdempotencyRetention)
	}
	ids := r.accept(n, "pm_card_visa")
	select {
	case <-allHeld:
	case <-time.After(2 * time.Minute): // only so that a broken test cannot hang
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%d of %d gifts had a resend held after 2 minutes", len(held), n)
	}
	if got := len(r.sb.Ledger().PaymentIntents); got != n {
		t.Fatalf("%d PaymentIntents executed, want %d", got, n)
	}
	cfg := r.sb.Config()
	cfg.LoseRate = 0
	if err := r.sb.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	clock.Jump(sandbox.DefaultIdempotencyRetention + time.Hour)
	expired = true
	mu.Unlock()
	released.Do(func() { close(release) })

	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
	mu.Lock()
	defer mu.Unlock()
	if len(resent) > 0 {
		t.Fatalf("keys sent again past the retention: %v", resent)
	}
}

// TestExpiredActionsCanceledDespiteFailures: gifts left in
// requires_action are canceled at the provider even when many cancels fail
// with 500s stored under their keys: each retry takes a fresh key.
func TestExpiredActionsCanceledDespiteFailures(t *testing.T) {
	// The action timeout is long, and the dispatcher's clock jumps past it
	// once every gift waits for its donor: a short timeout would race the
	// charges themselves on a slow machine.
	clock := &clocktest.Shifted{}
	r := newRig(t, sandbox.Options{}, func(k *knobs) {
		k.Dispatch.Clock, k.ActionTimeout, k.CancelBackoff = clock, time.Hour, 20*time.Millisecond
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
	r.canceledAtProvider()
}

// stuckCancels fails every cancel of the PaymentIntents in stuck, as a
// provider would that never gets over them.
type stuckCancels struct {
	floodgate.Provider
	mu    sync.Mutex
	stuck map[string]bool
}

func (p *stuckCancels) CancelPayment(ctx context.Context, id, key string) (*floodgate.Payment, error) {
	p.mu.Lock()
	stuck := p.stuck[id]
	p.mu.Unlock()
	if stuck {
		return nil, &floodgate.ProviderError{Kind: floodgate.ProviderServer, Message: "stuck (injected)"}
	}
	return p.Provider.CancelPayment(ctx, id, key)
}

// TestExpiryNotStarvedByStuckCancels: the expired gifts whose cancel
// fails for good, oldest of all and filling a whole page of the expirer,
// do not keep it from the others: each round pages past them.
func TestExpiryNotStarvedByStuckCancels(t *testing.T) {
	old := expireBatch
	expireBatch = 2
	t.Cleanup(func() { expireBatch = old })
	clock := &clocktest.Shifted{}
	prov := &stuckCancels{stuck: map[string]bool{}}
	r := newRig(t, sandbox.Options{}, func(k *knobs) {
		k.Dispatch.Clock, k.ActionTimeout, k.CancelBackoff = clock, time.Hour, 20*time.Millisecond
		k.Provider = func(p floodgate.Provider) floodgate.Provider { prov.Provider = p; return prov }
	})
	ids := r.accept(6, "pm_card_authenticationRequired")
	r.wait(ids, floodgate.StatusRequiresAction)
	head, err := r.store.ActionExpired(r.ctx, time.Now().Add(24*time.Hour), floodgate.ActionCursor{}, expireBatch)
	if err != nil || len(head) != expireBatch {
		t.Fatalf("the oldest actions: %v, %v", head, err)
	}
	stuck := map[string]bool{}
	prov.mu.Lock()
	for _, o := range head {
		prov.stuck[o.PaymentIntentID] = true
		stuck[o.PaysFor] = true
	}
	prov.mu.Unlock()
	var rest []string
	for _, id := range ids {
		if !stuck[id] {
			rest = append(rest, id)
		}
	}
	clock.Jump(2 * time.Hour)
	r.wait(rest, floodgate.StatusCanceled)
	for id := range stuck {
		if d, err := r.store.Donation(r.ctx, id); err != nil || d.Status != floodgate.StatusRequiresAction {
			t.Fatalf("a gift whose cancel always fails: %+v, %v", d, err)
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
		state, _ := r.control.breaker.status()
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

// flakyStore fails the first call of MarkUnknown, of SweptNewKey and of
// Defer, as a database failing over would.
type flakyStore struct {
	floodgate.Store
	markFailed, newKeyFailed, deferFailed atomic.Bool
}

var errFlaky = errors.New("store: connection reset (injected)")

func (s *flakyStore) MarkUnknown(ctx context.Context, c floodgate.Claim, w floodgate.Window, cause string, now time.Time) (*floodgate.PaymentOrder, error) {
	if s.markFailed.CompareAndSwap(false, true) {
		return nil, errFlaky
	}
	return s.Store.MarkUnknown(ctx, c, w, cause, now)
}

func (s *flakyStore) SweptNewKey(ctx context.Context, id string, from int, pi string, now time.Time) (*floodgate.PaymentOrder, error) {
	if s.newKeyFailed.CompareAndSwap(false, true) {
		return nil, errFlaky
	}
	return s.Store.SweptNewKey(ctx, id, from, pi, now)
}

func (s *flakyStore) Defer(ctx context.Context, c floodgate.Claim, wait time.Duration) error {
	if s.deferFailed.CompareAndSwap(false, true) {
		return errFlaky
	}
	return s.Store.Defer(ctx, c, wait)
}

// TestStoreFailureWhileDeferring: after a stored 500 the store fails as
// the unknown outcome is handed to the sweeps, again as the gift is put
// off instead, and again as the sweeps record the new key. The dispatcher
// goes on extending the leases of what it claimed, so a put-off it did not
// record would hold the gift forever: it retries, the sweeper tries the
// new key again at its next sweep, and every gift is charged once.
func TestStoreFailureWhileDeferring(t *testing.T) {
	flaky := &flakyStore{}
	r := newRigWith(t, sandbox.Options{FailRate: 0.5}, func(s floodgate.Store) floodgate.Store {
		flaky.Store = s
		return flaky
	}, nil)
	ids := r.accept(20, "pm_card_visa")
	r.wait(ids, floodgate.StatusSucceeded)
	r.chargedOnce(ids)
	if !flaky.markFailed.Load() || !flaky.newKeyFailed.Load() || !flaky.deferFailed.Load() {
		t.Fatalf("the store never failed (hand-over %v, new key %v, defer %v): the test proved nothing",
			flaky.markFailed.Load(), flaky.newKeyFailed.Load(), flaky.deferFailed.Load())
	}
}

// TestScreenFailsOnlyGiftsNeverSent: a gift the card-testing screen
// refuses is failed without any provider call, with a note saying so; a
// gift resumed from a dispatcher that died may have been charged, so it
// is never screened but charged (or looked up) under its key. Every
// settlement is told to Outcome.
func TestScreenFailsOnlyGiftsNeverSent(t *testing.T) {
	var screened atomic.Int64
	outcomes := make(chan *floodgate.PaymentOrder, 8)
	r := newRig(t, sandbox.Options{}, func(k *knobs) {
		k.Screen = func(*floodgate.PaymentOrder) bool { screened.Add(1); return false }
		k.Outcome = func(o *floodgate.PaymentOrder) { outcomes <- o }
	})
	if err := r.control.Pause(r.ctx, true); err != nil {
		t.Fatal(err)
	}
	ids := r.accept(2, "pm_card_visa")
	// The first is claimed by a dispatcher that dies: its lease runs out
	// (it is claimed with one that ended before it began) and this one
	// resumes it, not knowing whether it was sent.
	if got, err := r.store.ClaimOrders(r.ctx, "dead", 1, -4*time.Minute); err != nil || len(got) != 1 || got[0].PaysFor != ids[0] {
		t.Fatalf("claim as the dead dispatcher: %v %v", got, err)
	}
	if err := r.control.Pause(r.ctx, false); err != nil {
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
		case o := <-outcomes:
			seen[o.PaysFor] = o.Status
		case <-time.After(time.Minute):
			t.Fatalf("outcomes told: %v", seen)
		}
	}
	if seen[ids[0]] != floodgate.StatusSucceeded || seen[ids[1]] != floodgate.StatusFailed {
		t.Fatalf("outcomes told: %v", seen)
	}
}

// TestStopReleasesClaimsInFlight: a dispatcher stopped while a charge is
// in flight releases that gift's claim (and those of gifts it claimed but
// had not started), so another dispatcher resumes them at once rather than
// when the lease runs out.
func TestStopReleasesClaimsInFlight(t *testing.T) {
	r := newRig(t, sandbox.Options{Latency: time.Minute}, func(k *knobs) {
		k.CallTimeout, k.Dispatch.Workers = 2*time.Minute, 1
	})
	ids := r.accept(2, "pm_card_visa")
	r.wait(ids, floodgate.StatusProcessing)
	r.disp.Stop()
	got, err := r.store.ClaimOrders(r.ctx, "next", 5, time.Minute)
	if err != nil || len(got) != 2 {
		t.Fatalf("claim after the stop = %v, %v; want both gifts, released", got, err)
	}
	for _, o := range got {
		if o.Attempt != 0 || o.KeySince == nil || o.ClaimedBy != "next" {
			t.Fatalf("resumed = %+v", o)
		}
	}
}
