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
	// Queue bounds claimed donations held in memory.
	Queue int
	// Claim bounds donations claimed per store round trip.
	Claim int
	// Lease is how long a claimed donation is held before another
	// dispatcher may resume it.
	Lease time.Duration
	// DeferWait is how long a gift whose outcome could not be established
	// (the provider did not answer a lookup) waits before any dispatcher
	// looks at it again.
	DeferWait time.Duration
	// ReleaseAllOnStart resumes every processing donation at once: right
	// for a single-node store, where no other dispatcher can be alive.
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
	// provider is first sent; true means it was failed, unsent.
	Refuse(ctx context.Context, d *floodgate.Donation) bool
	// Declined learns a card decline: the card's fingerprint, the
	// provider's code and the bank's decline code.
	Declined(ctx context.Context, fingerprint, code, decline string)
}

// Dispatcher is the charger: it claims accepted donations from the line,
// keeps their leases, and its workers charge each one, paced by the Link,
// step by step (charge.go) until it is settled or put off. It also answers
// a waiting donor's place in line.
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
	wake     chan struct{}
	line     lineState
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
		rec: parts.Reconciler, screen: parts.Screen, wake: make(chan struct{}, 1)}
	parts.Link.onResume(d.Wake)
	return d
}

// Start launches the claimer, the workers, the lease keeper and the
// line's upkeep. With ReleaseAllOnStart, every processing donation is
// resumed first.
func (d *Dispatcher) Start(ctx context.Context) error {
	ctx, ok := d.StartInit(ctx)
	if !ok {
		return nil
	}
	if d.opts.ReleaseAllOnStart {
		if err := d.store.ReleaseLeases(ctx, ""); err != nil {
			return d.StartDone(fmt.Errorf("dispatch: release leases: %w", err))
		}
	}
	// What this run claimed and did not settle keeps its key, and is
	// resumed on the next start, or at once by another node.
	d.AtStop(d.releaseLeases)
	d.inFlight.Store(0)
	work := make(chan *floodgate.Donation, d.opts.Queue)
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

// Stop stops claiming, abandons calls in flight (their donations keep
// their keys and resume on the next start, or on another node once the
// leases are released) and waits for every goroutine.
func (d *Dispatcher) Stop() { d.Base.Stop() }

func (d *Dispatcher) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.store.ReleaseLeases(ctx, d.opts.Owner); err != nil {
		d.log.Warn("dispatch: releasing leases at stop", "err", err)
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
func (d *Dispatcher) claimLoop(ctx context.Context, work chan<- *floodgate.Donation) {
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
			ds, err := d.store.ClaimDonations(ctx, d.opts.Owner, room, d.opts.Clock.Now(), d.opts.Lease)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Error("dispatch: claim failed", "err", err)
				}
				next = time.Second
			}
			for _, don := range ds {
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

func (d *Dispatcher) workLoop(ctx context.Context, work <-chan *floodgate.Donation) {
	for {
		select {
		case <-ctx.Done():
			return
		case don := <-work:
			d.charge(ctx, don)
			d.inFlight.Add(-1)
		}
	}
}

func (d *Dispatcher) extendLeases(ctx context.Context) {
	if err := d.store.ExtendLeases(ctx, d.opts.Owner, d.opts.Clock.Now().Add(d.opts.Lease)); err != nil && ctx.Err() == nil {
		d.log.Error("dispatch: extending leases failed", "err", err)
	}
}
