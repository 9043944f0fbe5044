package dispatch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/sandbox"
	"github.com/floodgate/floodgate/internal/sqlite"
	"github.com/floodgate/floodgate/internal/startstop"
	fgstripe "github.com/floodgate/floodgate/internal/stripe"
)

// rig is a dispatcher with real parts: a SQLite store, the sandbox over
// real HTTP, and the stripe-go adapter pointed at it, with every service
// of the dispatch package wired and started as serve does.
type rig struct {
	t     *testing.T
	ctx   context.Context
	store *sqlite.Store
	sb    *sandbox.Server
	*services
	n int
}

// knobs are the rig's settings, every service's in one place.
type knobs struct {
	Rate, GlobalRate                          float64
	CallTimeout, ActionTimeout, CancelBackoff time.Duration
	SweepEvery                                time.Duration
	Dispatch                                  Options
	Screen                                    func(*floodgate.PaymentOrder) bool
	// Provider, when set, wraps the provider the services call.
	Provider func(floodgate.Provider) floodgate.Provider
	Outcome  func(*floodgate.PaymentOrder)
}

// services are the dispatch services, built and started in the order
// serve starts them; the test's cleanup stops them in reverse.
type services struct {
	control  *Control
	link     *Link
	settler  *Settler
	rec      *Reconciler
	sweeper  *Sweeper
	cards    *CardGuard
	webhooks *Webhooks
	expirer  *Expirer
	disp     *Dispatcher
}

func startServices(t *testing.T, store floodgate.Store, prov floodgate.Provider, k knobs) *services {
	t.Helper()
	o := k.Dispatch
	s := &services{control: NewControl(store, ControlOptions{Clock: o.Clock})}
	s.link = NewLink(store, prov, s.control, LinkOptions{Rate: k.Rate, GlobalRate: k.GlobalRate, CallTimeout: k.CallTimeout, Clock: o.Clock})
	s.settler = NewSettler(store, SettlerOptions{Policy: o.Policy, Clock: o.Clock, Outcome: k.Outcome})
	s.rec = NewReconciler(store, s.link, ReconcilerOptions{Policy: o.Policy, Clock: o.Clock})
	s.sweeper = NewSweeper(store, s.link, s.settler, SweeperOptions{Owner: "rig", Every: k.SweepEvery, Policy: o.Policy, Clock: o.Clock})
	s.cards = NewCardGuard(store, s.link, s.settler, CardGuardOptions{Screen: k.Screen, Clock: o.Clock})
	s.webhooks = NewWebhooks(store, s.settler, WebhooksOptions{Link: s.link, Policy: o.Policy, Clock: o.Clock})
	s.expirer = NewExpirer(store, s.link, s.settler, ExpirerOptions{ActionTimeout: k.ActionTimeout, CancelBackoff: k.CancelBackoff, Clock: o.Clock})
	s.disp = New(store, Parts{Link: s.link, Settler: s.settler, Reconciler: s.rec, Screen: s.cards}, o)
	g := startstop.NewGroup(s.control, s.link, s.rec, s.sweeper, s.cards, s.webhooks, s.expirer, s.disp)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Stop)
	return s
}

func newRig(t *testing.T, sbOpts sandbox.Options, change func(*knobs)) *rig {
	t.Helper()
	return newRigWith(t, sbOpts, nil, change)
}

// newRigWith is newRig whose dispatcher sees the store through wrap (nil:
// as it is), for stores that fail on purpose.
func newRigWith(t *testing.T, sbOpts sandbox.Options, wrap func(floodgate.Store) floodgate.Store, change func(*knobs)) *rig {
	t.Helper()
	ctx := context.Background()
	store := openStore(t)
	if sbOpts.Seed == 0 {
		sbOpts.Seed = 42
	}
	sb, err := sandbox.New(sbOpts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sb)
	t.Cleanup(func() { srv.Close(); _ = sb.Close() })
	k := knobs{Rate: 100, GlobalRate: 200, CallTimeout: 5 * time.Second, ActionTimeout: time.Hour, SweepEvery: 100 * time.Millisecond,
		Dispatch: Options{Workers: 8, Queue: 32, Claim: 16, Lease: time.Minute, ReleaseAllOnStart: true, Poll: 10 * time.Millisecond,
			Policy: DefaultPolicy, DeferWait: 100 * time.Millisecond}}
	k.Dispatch.Policy.Base, k.Dispatch.Policy.Cap = 10*time.Millisecond, 200*time.Millisecond
	if change != nil {
		change(&k)
	}
	// The client reads the provider's clock against the dispatcher's.
	prov, err := fgstripe.New(fgstripe.Options{SecretKey: "sk_test_dispatch", APIBase: srv.URL, Timeout: k.CallTimeout, Clock: k.Dispatch.Clock})
	if err != nil {
		t.Fatal(err)
	}
	var called floodgate.Provider = prov
	if k.Provider != nil {
		called = k.Provider(prov)
	}
	var seen floodgate.Store = store
	if wrap != nil {
		seen = wrap(store)
	}
	return &rig{t: t, ctx: ctx, store: store, sb: sb, services: startServices(t, seen, called, k)}
}

// openStore opens a SQLite store in a temporary directory, closed when
// the test ends, with one campaign "c" in euros.
func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
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
	return store
}

// canceledAtProvider checks the provider's ledger: every PaymentIntent
// ended canceled.
func (r *rig) canceledAtProvider() {
	r.t.Helper()
	for _, e := range r.sb.Ledger().PaymentIntents {
		if e.Status != "canceled" {
			r.t.Fatalf("PaymentIntent %s is %s at the provider", e.ID, e.Status)
		}
	}
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
