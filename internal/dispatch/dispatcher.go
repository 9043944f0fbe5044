package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// Options configure a Dispatcher. Every bound comes from configuration.
type Options struct {
	// Owner names this dispatcher in leases; unique per process.
	Owner string
	// Workers bounds provider calls in flight.
	Workers int
	// Queue bounds claimed orders held in memory.
	Queue int
	// Claim bounds orders claimed per store round trip.
	Claim int
	// Lease is how long a claimed order is held (on the store's clock)
	// before another dispatcher may take it over.
	Lease time.Duration
	// DeferWait is how long a gift whose outcome could not be established
	// (the provider did not answer a lookup) waits before any dispatcher
	// looks at it again.
	DeferWait time.Duration
	// ReleaseAllOnStart takes every claim back at start (each processing
	// order resumes at once, under a new token): right for a single-node
	// store, where no other dispatcher can be alive.
	ReleaseAllOnStart bool
	// Poll is how often an idle dispatcher looks for new donations.
	Poll   time.Duration
	Policy Policy
	Clock  floodgate.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// Parts are the services a Dispatcher works through. It starts and stops
// none of them: they must run while it does (start them first, stop them
// after it).
type Parts struct {
	// Link makes every provider call.
	Link *Link
	// Settler records every settlement.
	Settler *Settler
	// Reconciler looks up the outcomes the provider left unknown.
	Reconciler *Reconciler
	// Screen, when set, is asked about each gift before it is first sent
	// and told of every card decline (the card-testing defence: a
	// CardGuard).
	Screen Screen
}

// Screen is the card-testing defence as the charger uses it.
type Screen interface {
	// Refuse is asked before a gift that surely never reached the
	// provider is first sent, under the claim o holds; true means it was
	// failed, unsent.
	Refuse(ctx context.Context, o *floodgate.PaymentOrder) bool
	// Declined learns a card decline: the card's fingerprint, the
	// provider's code and the bank's decline code.
	Declined(ctx context.Context, fingerprint, code, decline string)
}

// Dispatcher is the charger: it claims payment orders from the line,
// whatever they pay for, keeps their leases, and its workers charge each
// one, paced by the Link, step by step (charge.go) until it is settled or
// put off. It also answers a waiting donor's place in line.
type Dispatcher struct {
	startstop.Base
	opts     Options
	store    floodgate.Line
	log      *slog.Logger
	link     *Link
	settler  *Settler
	rec      *Reconciler
	screen   Screen // nil: no card-testing defence
	inFlight atomic.Int64
	// held is every claim this dispatcher holds: renewed while it works,
	// released when it stops.
	held heldClaims
	wake chan struct{}
	line lineState
}

var _ startstop.Service = (*Dispatcher)(nil)

// New returns a Dispatcher; nothing runs until Start.
func New(store floodgate.Line, parts Parts, opts Options) *Dispatcher {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	if opts.Poll <= 0 {
		opts.Poll = 100 * time.Millisecond
	}
	if opts.DeferWait <= 0 {
		opts.DeferWait = time.Minute
	}
	if opts.Owner == "" {
		opts.Owner = floodgate.NewID("dispatcher_")
	}
	opts.Workers = max(opts.Workers, 1)
	opts.Queue = max(opts.Queue, 1)
	opts.Claim = max(min(opts.Claim, opts.Queue), 1)
	d := &Dispatcher{opts: opts, store: store, log: logger(opts.Logger), link: parts.Link, settler: parts.Settler,
		rec: parts.Reconciler, screen: parts.Screen, wake: make(chan struct{}, 1), held: heldClaims{m: map[string]floodgate.Claim{}}}
	parts.Link.onResume(d.Wake)
	return d
}

// Start launches the claimer, the workers, the lease keeper and the
// line's upkeep. With ReleaseAllOnStart, every claim is taken back first.
func (d *Dispatcher) Start(ctx context.Context) error {
	ctx, ok := d.StartInit(ctx)
	if !ok {
		return nil
	}
	if d.opts.ReleaseAllOnStart {
		if err := d.store.TakeBackClaims(ctx); err != nil {
			return d.StartDone(fmt.Errorf("dispatch: take back claims: %w", err))
		}
	}
	// What this run claimed and did not settle keeps its key, and is
	// resumed on the next start, or at once by another node.
	d.AtStop(d.releaseLeases)
	d.inFlight.Store(0)
	work := make(chan *floodgate.PaymentOrder, d.opts.Queue)
	d.refreshLine(ctx)
	d.Go(func(ctx context.Context) { d.claimLoop(ctx, work) })
	for range d.opts.Workers {
		d.Go(func(ctx context.Context) { d.workLoop(ctx, work) })
	}
	clock := d.opts.Clock
	d.Go(func(ctx context.Context) {
		floodgate.Every(ctx, clock, max(d.opts.Lease/3, 10*time.Millisecond), d.extendLeases)
	})
	d.Go(func(ctx context.Context) { floodgate.Every(ctx, clock, 250*time.Millisecond, d.refreshLine) })
	d.Go(func(ctx context.Context) { floodgate.Every(ctx, clock, time.Second, d.measureLine) })
	return d.StartDone(nil)
}

// Stop stops claiming, abandons calls in flight (their orders keep their
// keys and resume on the next start, or on another node once the claims
// are released) and waits for every goroutine.
func (d *Dispatcher) Stop() { d.Base.Stop() }

func (d *Dispatcher) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.store.ReleaseClaims(ctx, d.held.list()); err != nil {
		d.log.Warn("dispatch: releasing claims at stop", "err", err)
	}
}

// Wake tells an idle dispatcher that donations are waiting.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// claimLoop keeps a little work ready: enough for about two seconds at the
// current rate, never more than the queue holds, so that claimed gifts do
// not sit in memory while others could be served by another node.
func (d *Dispatcher) claimLoop(ctx context.Context, work chan<- *floodgate.PaymentOrder) {
	timer := d.opts.Clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-d.wake:
		}
		want := int(math.Ceil(d.link.Rate()*2)) + 1
		room := min(cap(work)-len(work), d.opts.Claim, max(want-len(work), 0))
		switch state, _ := d.Charging(); {
		case state == floodgate.ChargingWaiting && d.inFlight.Load() == 0 && d.link.probeDue():
			// The breaker waits for a probe and no gift in hand will send
			// one (those it held were put off): claim one to probe with,
			// or charging would wait for a restart.
			room = min(room, 1)
		case state != floodgate.ChargingRunning:
			// Leave the line to nodes that can charge, or to later.
			room = 0
		}
		next := d.opts.Poll
		if room > 0 {
			ds, err := d.store.ClaimOrders(ctx, d.opts.Owner, room, d.opts.Lease)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("dispatch: claim failed", "err", err)
				}
				next = time.Second
			}
			for _, don := range ds {
				d.held.add(don)
				d.inFlight.Add(1)
				work <- don // room was reserved above; only this loop sends
			}
			if len(ds) == room {
				next = 0 // there may be more
			}
		} else {
			next = min(next, 20*time.Millisecond)
		}
		if d.opts.Metrics != nil {
			d.opts.Metrics.Dispatching.Set(float64(d.inFlight.Load()))
		}
		timer.Reset(next)
	}
}

func (d *Dispatcher) workLoop(ctx context.Context, work <-chan *floodgate.PaymentOrder) {
	for {
		select {
		case <-ctx.Done():
			return
		case don := <-work:
			d.charge(ctx, don)
			if ctx.Err() == nil {
				// Done with it. One abandoned by a stop stays held, for
				// Stop to release.
				d.held.done(don)
			}
			d.inFlight.Add(-1)
		}
	}
}

// extendLeases renews every claim this dispatcher holds; a claim that no
// longer holds its order (its lease ran out first) is not renewed, and
// what is sent under it is refused.
func (d *Dispatcher) extendLeases(ctx context.Context) {
	claims := d.held.list()
	n, err := d.store.ExtendClaims(ctx, claims, d.opts.Lease)
	switch {
	case err != nil && ctx.Err() == nil:
		d.log.Error("dispatch: extending leases failed", "err", err)
	case err == nil && n < len(claims):
		d.log.Debug("dispatch: claims no longer held", "held", len(claims), "renewed", n)
	}
}
