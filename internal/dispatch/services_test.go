package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
	"github.com/floodgate/floodgate/internal/sandbox"
)

// TestExpirerRunsOnTheClock: the whole dispatcher runs on a clock that
// stands still; a gift waits in 3-D Secure until the test moves the clock
// past the action timeout, and is canceled then, not a moment before,
// however fast or slow the machine.
func TestExpirerRunsOnTheClock(t *testing.T) {
	clock := clocktest.New(time.Now())
	r := newRig(t, sandbox.Options{}, func(k *knobs) {
		k.Dispatch.Clock, k.ActionTimeout = clock, time.Hour
	})
	ids := r.accept(1, "pm_card_authenticationRequired")
	r.wait(ids, floodgate.StatusRequiresAction)
	// Every loop of every service waits on the clock: moving it by less
	// than the timeout runs each once (they are all waiting again after),
	// and cancels nothing.
	loops := clock.Timers()
	clock.Advance(59 * time.Minute)
	clock.WaitTimers(loops)
	if d, err := r.store.Donation(r.ctx, ids[0]); err != nil || d.Status != floodgate.StatusRequiresAction {
		t.Fatalf("before the action timeout: %+v %v", d, err)
	}
	clock.Advance(2 * time.Minute)
	d := r.wait(ids, floodgate.StatusCanceled)[ids[0]]
	if d.PaymentIntentID == "" {
		t.Fatalf("canceled gift = %+v", d)
	}
	r.canceledAtProvider()
}

// TestDispatcherRestarts: a dispatcher stopped and started again charges
// what came in meanwhile, once, with nothing left of its last run.
func TestDispatcherRestarts(t *testing.T) {
	r := newRig(t, sandbox.Options{}, nil)
	first := r.accept(5, "pm_card_visa")
	r.wait(first, floodgate.StatusSucceeded)
	r.disp.Stop()
	r.disp.Stop()
	second := r.accept(5, "pm_card_visa")
	for _, id := range second {
		if d, err := r.store.Donation(r.ctx, id); err != nil || d.Status != floodgate.StatusAccepted {
			t.Fatalf("donation %s while stopped: %+v %v", id, d, err)
		}
	}
	if err := r.disp.Start(r.ctx); err != nil {
		t.Fatal(err)
	}
	r.wait(second, floodgate.StatusSucceeded)
	r.chargedOnce(append(first, second...))
}

// TestServicesOutsideTheirRun: a service that does not run refuses its
// work in a way that loses nothing: an event is answered so that the
// provider delivers it again, a lookup puts the gift off, and the node is
// not ready.
func TestServicesOutsideTheirRun(t *testing.T) {
	ctx := context.Background()
	store := openStore(t)
	control := NewControl(store, ControlOptions{})
	link := NewLink(store, nil, control, LinkOptions{Rate: 1, GlobalRate: 1}) // no provider: a call would panic
	w := NewWebhooks(store, NewSettler(store, SettlerOptions{}), WebhooksOptions{})
	rec := NewReconciler(store, link, ReconcilerOptions{})
	ev := &floodgate.ProviderEvent{ID: "evt_1", Type: "payment_intent.succeeded", PaymentIntentID: "pi_unknown"}

	refused := func(when string) {
		t.Helper()
		if applied, err := w.Apply(ctx, ev); applied || floodgate.ErrorCode(err) != floodgate.EUNAVAILABLE {
			t.Fatalf("%s: Apply = %v, %v; want EUNAVAILABLE", when, applied, err)
		}
		if s := rec.resolve(ctx, &floodgate.PaymentOrder{ID: "po_1"}, nil, "server"); s.kind != stepDefer {
			t.Fatalf("%s: resolve = %v, want the gift put off", when, s)
		}
		if _, err := control.Ready(ctx); err == nil {
			t.Fatalf("%s: ready", when)
		}
	}
	refused("before Start")
	for _, s := range []interface{ Start(context.Context) error }{control, w} {
		if err := s.Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if applied, err := w.Apply(ctx, ev); applied || err != nil {
		t.Fatalf("running: Apply of an unknown payment = %v, %v; want ignored", applied, err)
	}
	if note, err := control.Ready(ctx); note != "" || err != nil {
		t.Fatalf("running: Ready = %q, %v", note, err)
	}
	w.Stop()
	control.Stop()
	refused("after Stop")
}
