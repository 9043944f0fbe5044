package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
)

// Options configure a Dispatcher. Every bound comes from configuration.
type Options struct {
	// Owner names this dispatcher in leases; unique per process.
	Owner string
	// Rate bounds PaymentIntent requests per second (create, confirm).
	Rate float64
	// GlobalRate bounds all provider requests per second.
	GlobalRate float64
	// Workers bounds provider calls in flight.
	Workers int
	// Queue bounds claimed donations held in memory.
	Queue int
	// Claim bounds donations claimed per store round trip.
	Claim int
	// Lease is how long a claimed donation is held before another
	// dispatcher may resume it.
	Lease time.Duration
	// CallTimeout bounds one provider call.
	CallTimeout time.Duration
	// ActionTimeout cancels a gift left in requires_action this long.
	ActionTimeout time.Duration
	// DeferWait is how long a gift whose outcome could not be established
	// (the provider did not answer a lookup) waits before any dispatcher
	// looks at it again.
	DeferWait time.Duration
	// CardBlock is how long a card (by fingerprint) is refused after a
	// decline a donor could not fix by retyping; 0 turns blocking off.
	CardBlock time.Duration
	// CardTestingArm is the cards blocked within ten minutes that arm the
	// check: while armed, each gift's card is looked up before it is
	// charged, and a blocked one is never sent.
	CardTestingArm int
	// CancelBackoff is the first wait before a failed cancel of an expired
	// gift is tried again; it doubles with each failure, up to ten minutes.
	CancelBackoff time.Duration
	// ReleaseAllOnStart resumes every processing donation at once: right
	// for a single-node store, where no other dispatcher can be alive.
	ReleaseAllOnStart bool
	// SharedBudgets paces against budgets in the store that every node
	// draws on (several nodes on one database); otherwise each dispatcher
	// paces alone.
	SharedBudgets bool
	// Poll is how often an idle dispatcher looks for new donations.
	Poll   time.Duration
	Policy Policy
	Clock  floodgate.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Settled is called after every settlement, and after a refund or a
	// dispute is recorded (to push live totals), with the order as it now
	// is.
	Settled func(o *floodgate.PaymentOrder)
	// Outcome, when set, is called after every settlement of a charge,
	// here or from a webhook, never for a refund or a dispute: the
	// card-testing defence learns each address's declines and successes.
	Outcome func(o *floodgate.PaymentOrder)
	// Screen, when set, is asked before a gift that never reached the
	// provider is charged; false fails it unsent (card-testing defence:
	// its client address is suspect and past its allowance).
	Screen func(o *floodgate.PaymentOrder) bool
}

// Dispatcher charges accepted donations. Start it once; Stop it once or
// more.
type Dispatcher struct {
	opts     Options
	store    floodgate.Store
	provider floodgate.Provider
	log      *slog.Logger
	create   gate // PaymentIntent create and confirm
	global   gate // every provider request
	breaker  *breaker
	paused   atomic.Bool

	work     chan *floodgate.PaymentOrder
	inFlight atomic.Int64
	// held is every claim this dispatcher holds: renewed while it works,
	// released when it stops.
	held heldClaims
	wake chan struct{}

	line lineState

	// cancels is the expired-action loop's backoff per gift; only that
	// loop touches it.
	cancels map[string]cancelRetry

	health providerHealth
	armed  atomic.Bool // card testing suspected: cards are looked up before charging

	declinesMu sync.Mutex
	declines   []time.Time // this node's card-blocking declines, the last ten minutes

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New returns a Dispatcher; nothing runs until Start.
func New(store floodgate.Store, provider floodgate.Provider, opts Options) *Dispatcher {
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
	if opts.CancelBackoff <= 0 {
		opts.CancelBackoff = 30 * time.Second
	}
	if opts.Owner == "" {
		opts.Owner = floodgate.NewID("dispatcher_")
	}
	opts.Workers = max(opts.Workers, 1)
	opts.Queue = max(opts.Queue, 1)
	opts.Claim = max(min(opts.Claim, opts.Queue), 1)
	now := opts.Clock.Now()
	d := &Dispatcher{
		opts: opts, store: store, provider: provider, log: logger(opts.Logger), breaker: newBreaker(),
		create: newPacer(opts.Rate, now), global: newPacer(opts.GlobalRate, now),
		work: make(chan *floodgate.PaymentOrder, opts.Queue), wake: make(chan struct{}, 1),
		cancels: map[string]cancelRetry{}, held: heldClaims{m: map[string]floodgate.Claim{}},
	}
	if opts.SharedBudgets {
		d.create = newSharedGate(store, floodgate.BudgetPaymentIntents, opts.Rate, opts.Clock, d.log)
		d.global = newSharedGate(store, floodgate.BudgetProvider, opts.GlobalRate, opts.Clock, d.log)
	}
	d.line.rate.Store(math.Float64bits(opts.Rate))
	return d
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}

// Start launches the claimer, the workers and the housekeeping loops.
func (d *Dispatcher) Start(ctx context.Context) error {
	if d.opts.ReleaseAllOnStart {
		if err := d.store.TakeBackClaims(ctx); err != nil {
			return fmt.Errorf("dispatch: take back claims: %w", err)
		}
	}
	ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	d.refreshLine(ctx)
	d.refreshPause(ctx)
	d.spawn(func() { d.every(ctx, time.Second, d.refreshPause) })
	if d.opts.CardBlock > 0 {
		d.refreshArmed(ctx)
		d.spawn(func() { d.every(ctx, 2*time.Second, d.refreshArmed) })
	}
	d.spawn(func() { d.claimLoop(ctx) })
	for range d.opts.Workers {
		d.spawn(func() { d.workLoop(ctx) })
	}
	d.spawn(func() { d.every(ctx, d.opts.Lease/3, d.extendLeases) })
	d.spawn(func() { d.every(ctx, 250*time.Millisecond, d.refreshLine) })
	d.spawn(func() { d.every(ctx, time.Second, d.grow) })
	d.spawn(func() {
		d.every(ctx, min(max(d.opts.ActionTimeout/10, time.Second), d.opts.CancelBackoff, 30*time.Second), d.expireActions)
	})
	return nil
}

func (d *Dispatcher) spawn(f func()) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		f()
	}()
}

// Stop stops claiming, abandons calls in flight (their donations keep
// their keys and resume on the next start, or on another node once the
// leases are released) and waits for every goroutine.
func (d *Dispatcher) Stop() {
	d.once.Do(func() {
		if d.cancel == nil {
			return
		}
		d.cancel()
		d.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.store.ReleaseClaims(ctx, d.held.list()); err != nil {
			d.log.Warn("dispatch: releasing claims at stop", "err", err)
		}
	})
}

// Wake tells an idle dispatcher that donations are waiting.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) every(ctx context.Context, period time.Duration, f func(context.Context)) {
	t := time.NewTicker(max(period, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// claimLoop keeps a little work ready: enough for about two seconds at the
// current rate, never more than the queue holds, so that claimed gifts do
// not sit in memory while others could be served by another node.
func (d *Dispatcher) claimLoop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.wake:
		}
		want := int(math.Ceil(d.create.Rate()*2)) + 1
		room := min(cap(d.work)-len(d.work), d.opts.Claim, max(want-len(d.work), 0))
		switch state, _ := d.Charging(); {
		case state == floodgate.ChargingWaiting && d.inFlight.Load() == 0 && d.breaker.due(d.opts.Clock.Now()):
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
				d.work <- don // room was reserved above; only this loop sends
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
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

func (d *Dispatcher) workLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case don := <-d.work:
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

// maxGenerations bounds the new keys one charge run may use after lookups
// found no payment, when the provider's refusals were not server errors
// (those are retried for as long as they last).
const maxGenerations = 3

// charge drives one order until it is settled, or until the dispatcher
// stops (then it keeps its key and resumes later).
func (d *Dispatcher) charge(ctx context.Context, don *floodgate.PaymentOrder) {
	if d.screenedOut(ctx, don) || d.cardBlocked(ctx, don) {
		return
	}
	tries, generations := 0, 0
	for ctx.Err() == nil {
		if don.KeySince == nil {
			now := d.opts.Clock.Now()
			don.KeySince = &now
		}
		req := don.ChargeRequest()
		op := "create"
		if req.PaymentIntentID != "" {
			op = "confirm"
		}
		// The key may be sent only while the provider surely keeps it,
		// judged when the request leaves, after every wait.
		deadline := don.KeySince.Add(d.opts.Policy.KeyRetention)
		p, err := d.call(ctx, op, true, deadline, func(ctx context.Context) (*floodgate.Payment, error) { return d.provider.Charge(ctx, req) })
		if err == nil {
			next := d.apply(ctx, don, p)
			if next == nil {
				return
			}
			don, tries = next, 0
			continue
		}
		dec := d.opts.Policy.Decide(err, tries, d.opts.Clock.Now().Sub(*don.KeySince), rand.Float64())
		d.retried(dec)
		switch dec.Action {
		case Abandon:
			return
		case Final:
			d.settleDeclined(ctx, don, err)
			return
		case Reconcile:
			next := d.reconcile(ctx, don, err)
			if next == nil {
				return
			}
			don, tries = next, 0
			generations++
			if dec.Class == string(floodgate.ProviderServer) {
				// The provider is failing: never give up on the gift, but
				// do not hammer it either.
				if !sleep(ctx, d.opts.Policy.Backoff(generations, rand.Float64())) {
					return
				}
				continue
			}
			if generations >= maxGenerations {
				// Lookups proved, again and again, that nothing was
				// charged, yet the provider keeps refusing in a way that
				// hides the outcome (a payment method already used). Stop:
				// failing now is safe, and the donor may bring another
				// card.
				d.log.Error("dispatch: giving up after repeated unknown outcomes with no payment", "order", don.ID, "err", err)
				d.settle(ctx, floodgate.Settlement{OrderID: don.ID, Token: don.Token, Status: floodgate.StatusFailed, FailureCode: "processing_error",
					Note: "no payment after repeated unknown outcomes: " + dec.Class, At: d.opts.Clock.Now()})
				return
			}
			continue
		case Hold:
			d.log.Error("dispatch: the provider refuses our credentials; charging is held", "order", don.ID, "err", err)
		default:
			d.log.Debug("dispatch: retrying with the same key", "order", don.ID, "class", dec.Class, "wait", dec.Wait, "err", err)
		}
		if dec.SlowDown {
			now := d.opts.Clock.Now()
			d.create.SlowDown(now)
			d.global.SlowDown(now)
			d.publishRate()
		}
		tries++
		if !sleep(ctx, dec.Wait) {
			return
		}
	}
}

// errKeyExpired says a request was not sent because its idempotency key
// could have been forgotten by the provider by the time it arrived.
var errKeyExpired = errors.New("dispatch: the provider may no longer keep this idempotency key")

// call waits for the pacers and makes one provider call with the call
// timeout, recording metrics. With a deadline, the call is not made (and
// errKeyExpired returned) once the deadline has passed.
func (d *Dispatcher) call(ctx context.Context, op string, paced bool, deadline time.Time, f func(context.Context) (*floodgate.Payment, error)) (*floodgate.Payment, error) {
	if err := d.waitUnpaused(ctx); err != nil {
		return nil, err
	}
	probe, err := d.breaker.allow(ctx, d.opts.Clock)
	if err != nil {
		return nil, err
	}
	p, err := d.send(ctx, op, paced, deadline, f)
	d.breaker.record(err, probe, d.opts.Clock.Now())
	return p, err
}

// send waits for the budgets and makes the call.
func (d *Dispatcher) send(ctx context.Context, op string, paced bool, deadline time.Time, f func(context.Context) (*floodgate.Payment, error)) (*floodgate.Payment, error) {
	if paced {
		if err := d.create.Wait(ctx); err != nil {
			return nil, err
		}
	}
	if err := d.global.Wait(ctx); err != nil {
		return nil, err
	}
	if !deadline.IsZero() && !d.opts.Clock.Now().Before(deadline) {
		return nil, errKeyExpired
	}
	cctx, cancel := context.WithTimeout(ctx, d.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	p, err := f(cctx)
	if m := d.opts.Metrics; m != nil {
		m.ProviderLatency.WithLabelValues(op).Observe(time.Since(start).Seconds())
		outcome := "ok"
		var pe *floodgate.ProviderError
		if errors.As(err, &pe) {
			outcome = string(pe.Kind)
			if pe.Kind == floodgate.ProviderRateLimited || pe.Kind == floodgate.ProviderLockTimeout {
				reason := pe.RateLimitReason
				if pe.Kind == floodgate.ProviderLockTimeout {
					reason = "lock_timeout"
				} else if reason == "" {
					reason = "unspecified"
				}
				m.RateLimited.WithLabelValues(reason).Inc()
			}
		} else if err != nil {
			outcome = "network"
		}
		m.ProviderCalls.WithLabelValues(op, outcome).Inc()
	}
	d.health.record(err, d.opts.Clock.Now())
	if err == nil && paced {
		d.line.sent()
	}
	return p, err
}

func (d *Dispatcher) retried(dec Decision) {
	if d.opts.Metrics != nil && dec.Action != Final && dec.Action != Abandon {
		d.opts.Metrics.Retries.WithLabelValues(dec.Class).Inc()
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// apply records what a PaymentIntent says about an order, under its
// claim. It returns the order to charge again when the PaymentIntent still
// needs a confirmation (it exists, but no confirm of ours ran on it), else
// nil.
func (d *Dispatcher) apply(ctx context.Context, don *floodgate.PaymentOrder, p *floodgate.Payment) *floodgate.PaymentOrder {
	for polls := 0; ; polls++ {
		if s, ok := settlementFor(don, p, d.opts.Clock.Now()); ok {
			s.Token = don.Token
			d.settle(ctx, s)
			return nil
		}
		switch p.Status {
		case floodgate.PaymentRequiresConfirmation:
			// Confirm that PaymentIntent, under a key of its own.
			next, err := d.store.NewKeyGeneration(ctx, don.Claim(), don.Attempt, p.ID, d.opts.Clock.Now())
			if err != nil {
				d.log.Error("dispatch: recording a PaymentIntent to confirm failed", "order", don.ID, "payment_intent", p.ID, "err", err)
				d.deferDonation(ctx, don, d.opts.DeferWait)
				return nil
			}
			return next
		case floodgate.PaymentProcessing:
			// The provider is still working on it; a resent key would only
			// replay this answer, so ask for the PaymentIntent itself.
			if polls >= processingPolls {
				d.deferDonation(ctx, don, d.opts.DeferWait)
				return nil
			}
		default:
			// requires_capture: floodgate never asks for manual capture.
			d.log.Error("dispatch: incident: a PaymentIntent in a status floodgate never asks for", "order", don.ID,
				"payment_intent", p.ID, "status", p.Status)
			d.deferDonation(ctx, don, 10*d.opts.DeferWait)
			return nil
		}
		if !sleep(ctx, min(time.Duration(polls+1)*time.Second, 30*time.Second)) {
			return nil
		}
		id := p.ID
		q, err := d.call(ctx, "retrieve", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
			return d.provider.Payment(ctx, id)
		})
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("dispatch: retrieving a processing payment failed", "order", don.ID, "err", err)
			}
			continue
		}
		p = q
	}
}

// processingPolls bounds how long a worker watches one PaymentIntent in
// processing (about seven minutes) before it lets the gift wait.
const processingPolls = 30

// settlementFor is what a PaymentIntent in its current status means for
// the order, made under no claim; ok is false for a status that settles
// nothing.
func settlementFor(don *floodgate.PaymentOrder, p *floodgate.Payment, at time.Time) (floodgate.Settlement, bool) {
	s := floodgate.Settlement{OrderID: don.ID, PaymentIntentID: p.ID, At: at}
	switch p.Status {
	case floodgate.PaymentSucceeded:
		s.Status = floodgate.StatusSucceeded
	case floodgate.PaymentRequiresAction:
		s.Status, s.ClientSecret, s.NextAction = floodgate.StatusRequiresAction, p.ClientSecret, p.NextAction
	case floodgate.PaymentRequiresPaymentMethod:
		s.Status, s.FailureCode = floodgate.StatusFailed, GenericFailure(p.FailureCode, p.DeclineCode)
	case floodgate.PaymentCanceled:
		s.Status, s.Note = floodgate.StatusCanceled, "canceled at the provider"
	default:
		return s, false
	}
	return s, true
}

// settleDeclined records a final provider refusal.
func (d *Dispatcher) settleDeclined(ctx context.Context, don *floodgate.PaymentOrder, err error) {
	s := floodgate.Settlement{OrderID: don.ID, Token: don.Token, Status: floodgate.StatusFailed, At: d.opts.Clock.Now()}
	var pe *floodgate.ProviderError
	if errors.As(err, &pe) && pe.Kind == floodgate.ProviderCard && pe.Payment != nil {
		d.blockCard(ctx, pe.Payment.Fingerprint, pe.Code, pe.DeclineCode)
	}
	if errors.As(err, &pe) {
		s.FailureCode = GenericFailure(pe.Code, pe.DeclineCode)
		if pe.Kind != floodgate.ProviderCard {
			s.FailureCode = "processing_error"
			s.Note = "provider refused the request: " + pe.Code
			d.log.Error("dispatch: provider refused a charge request", "order", don.ID, "err", err)
		}
		if pe.Payment != nil {
			s.PaymentIntentID = pe.Payment.ID
		}
	}
	d.settle(ctx, s)
}

func (d *Dispatcher) settle(ctx context.Context, s floodgate.Settlement) {
	// The payment outcome is known and must not be lost; if this process
	// dies first, the lease lapses and the same key returns the same
	// outcome.
	var don *floodgate.PaymentOrder
	err := d.persist(ctx, "recording a settlement", s.OrderID, func() (err error) {
		don, err = d.store.Settle(ctx, s)
		return err
	})
	switch {
	case err == nil:
		if d.opts.Metrics != nil {
			d.opts.Metrics.Settled.WithLabelValues(string(s.Status)).Inc()
		}
		if d.opts.Outcome != nil {
			d.opts.Outcome(don)
		}
		if d.opts.Settled != nil {
			d.opts.Settled(don)
		}
	case floodgate.ErrorCode(err) == floodgate.ESTATE:
		// Already moved on (a webhook got there first), or no longer this
		// dispatcher's (its lease ran out and another took the order
		// over: the store kept the late result as history): nothing to do.
		d.log.Debug("dispatch: settlement not applied", "order", s.OrderID, "status", s.Status, "err", err)
	}
}

// persist runs write until the store takes it, refuses the move (ESTATE,
// returned), or ctx ends, backing off between tries: a write the
// dispatcher's promises depend on is never given up on a store failure.
func (d *Dispatcher) persist(ctx context.Context, what, orderID string, write func() error) error {
	for try := 0; ; try++ {
		err := write()
		if err == nil || floodgate.ErrorCode(err) == floodgate.ESTATE || ctx.Err() != nil {
			return err
		}
		d.log.Error("dispatch: "+what+" failed; retrying", "order", orderID, "err", err)
		if !sleep(ctx, d.opts.Policy.Backoff(try, rand.Float64())+100*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// fixable are decline codes a donor fixes by retyping or authenticating:
// they never block the card.
var fixable = map[string]bool{
	"expired_card": true, "incorrect_cvc": true, "incorrect_number": true, "incorrect_zip": true,
	"processing_error": true, "authentication_required": true, "payment_intent_authentication_failure": true,
}

// blockCard refuses a declined card for CardBlock, unless the donor could
// fix the decline by retyping.
func (d *Dispatcher) blockCard(ctx context.Context, fingerprint, code, decline string) {
	if d.opts.CardBlock <= 0 || fingerprint == "" || fixable[code] || fixable[decline] {
		return
	}
	now := d.opts.Clock.Now()
	if err := d.store.BlockFingerprint(ctx, fingerprint, now, now.Add(d.opts.CardBlock)); err != nil && ctx.Err() == nil {
		d.log.Warn("dispatch: blocking a declined card failed", "err", err)
	}
	// Arm at once when declines come at the pace of card testing: waiting
	// for the next refresh would let the next few attempts through.
	d.declinesMu.Lock()
	d.declines = append(recent(d.declines, now), now)
	n := len(d.declines)
	d.declinesMu.Unlock()
	if n >= max(d.opts.CardTestingArm, 1) && !d.armed.Swap(true) {
		d.log.Warn("dispatch: card-testing check armed", "card_declines_in_10m", n)
	}
}

// recent drops the times older than ten minutes before now.
func recent(ts []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(ts) && now.Sub(ts[i]) > 10*time.Minute {
		i++
	}
	return ts[i:]
}

// refreshArmed arms the card check while card-blocking declines come at
// the pace of card testing: on this node (declines), or across the nodes
// (distinct cards blocked, from the store); it disarms when both calm.
func (d *Dispatcher) refreshArmed(ctx context.Context) {
	now := d.opts.Clock.Now()
	cards, err := d.store.FingerprintsBlockedSince(ctx, now.Add(-10*time.Minute))
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("dispatch: counting blocked cards failed", "err", err)
		}
		return
	}
	d.declinesMu.Lock()
	d.declines = recent(d.declines, now)
	declines := len(d.declines)
	d.declinesMu.Unlock()
	arm := max(d.opts.CardTestingArm, 1)
	armed := declines >= arm || cards >= arm
	if armed != d.armed.Swap(armed) {
		d.log.Warn("dispatch: card-testing check", "armed", armed, "card_declines_in_10m", declines, "cards_blocked_in_10m", cards)
	}
}

// cardBlocked looks the gift's card up while card testing is suspected,
// and refuses a blocked card without ever sending the charge: the gift
// ends failed with a generic code, and the donor may bring another card.
// A failed look-up lets the charge go (a provider hiccup must not refuse
// donors).
func (d *Dispatcher) cardBlocked(ctx context.Context, don *floodgate.PaymentOrder) bool {
	if d.opts.CardBlock <= 0 || !d.armed.Load() || !d.neverSent(don) {
		return false
	}
	var fp string
	_, err := d.call(ctx, "payment_method", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		var err error
		fp, err = d.provider.CardFingerprint(ctx, don.PaymentMethod)
		return nil, err
	})
	if err != nil || fp == "" {
		return false
	}
	blocked, err := d.store.FingerprintBlocked(ctx, fp, d.opts.Clock.Now())
	if err != nil || !blocked {
		return false
	}
	d.refuseUnsent(ctx, don, "fingerprint", "card_declined", "card refused: declined before (card-testing defence); never sent")
	return true
}

// refuseUnsent fails a gift that never reached the provider, for the
// card-testing defence's reason, with a failure code the donor may see
// and a history note that says it was never sent.
func (d *Dispatcher) refuseUnsent(ctx context.Context, don *floodgate.PaymentOrder, reason, code, note string) {
	if d.opts.Metrics != nil {
		d.opts.Metrics.Blocked.WithLabelValues(reason).Inc()
	}
	d.log.Info("dispatch: gift refused, never sent (card-testing defence)", "order", don.ID, "reason", reason)
	d.settle(ctx, floodgate.Settlement{OrderID: don.ID, Token: don.Token, Status: floodgate.StatusFailed, FailureCode: code,
		Note: note, At: d.opts.Clock.Now()})
}

// neverSent reports whether a gift in hand surely never reached the
// provider under its current key: it was just claimed from the line, not
// resumed after a dispatcher died or put it off (those may have been
// charged, and only the provider can say). A claim from the line stamps
// the key's first use with the claim's time, which is where the lease
// starts; a resumed gift keeps the time its key was first used, earlier
// than any lease it is claimed under again.
func (d *Dispatcher) neverSent(don *floodgate.PaymentOrder) bool {
	return don.PaymentIntentID == "" && don.KeySince != nil && don.LeaseUntil != nil &&
		don.LeaseUntil.Sub(*don.KeySince) == d.opts.Lease
}

// screenedOut asks the card-testing screen whether a gift that never
// reached the provider may be charged now, and fails it unsent when not:
// gifts queued from an address before it turned suspect would otherwise
// all reach the provider. The donor may bring another card, which is
// limited as a new gift is.
func (d *Dispatcher) screenedOut(ctx context.Context, don *floodgate.PaymentOrder) bool {
	if d.opts.Screen == nil || !d.neverSent(don) || d.opts.Screen(don) {
		return false
	}
	d.refuseUnsent(ctx, don, "address", "processing_error",
		"refused: too many attempts from a suspect address (card-testing defence, address); never sent")
	return true
}

// GenericFailure turns a provider's failure code into one a donor may see:
// never a fraud signal (stolen_card, fraudulent, lost_card ...).
func GenericFailure(code, decline string) string {
	switch {
	case code == "expired_card", code == "incorrect_cvc", code == "processing_error", code == "incorrect_number":
		return code
	case code == "payment_intent_authentication_failure":
		return "authentication_failed"
	case decline == "insufficient_funds":
		return "insufficient_funds"
	}
	return "card_declined"
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

func (d *Dispatcher) grow(ctx context.Context) {
	now := d.opts.Clock.Now()
	d.create.Grow(now)
	d.global.Grow(now)
	d.publishRate()
	// Busy means charging with work to do: paused, or waiting for the
	// provider, nothing is sent, and that says nothing of the rate.
	state, _ := d.Charging()
	busy := (d.line.waiting.Load() > 0 || d.inFlight.Load() > 0) && state == floodgate.ChargingRunning
	measured := d.line.measure(time.Now(), busy)
	if d.opts.Metrics != nil {
		d.opts.Metrics.SendRate.Set(measured)
	}
}

func (d *Dispatcher) publishRate() {
	r := d.create.Rate()
	d.line.rate.Store(math.Float64bits(r))
	if d.opts.Metrics != nil {
		d.opts.Metrics.AllowedRate.Set(r)
	}
}

// expireActions cancels gifts left in requires_action past the timeout.
// A cancel whose outcome is unknown is tried again later under a fresh key
// (canceling twice does no harm; a key that stored a 5xx would replay it
// for a day), with a backoff per gift, so that a few stuck ones neither
// starve the rest nor spend the budget every round.
func (d *Dispatcher) expireActions(ctx context.Context) {
	now := d.opts.Clock.Now()
	ds, err := d.store.ActionExpired(ctx, now.Add(-d.opts.ActionTimeout), expireBatch)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error("dispatch: listing expired actions failed", "err", err)
		}
		return
	}
	live := make(map[string]bool, len(ds))
	for _, don := range ds {
		live[don.ID] = true
		if ctx.Err() != nil {
			return
		}
		retry := d.cancels[don.ID]
		if now.Before(retry.next) {
			continue
		}
		if d.cancelExpired(ctx, don, retry.tries) {
			delete(d.cancels, don.ID)
			continue
		}
		retry.tries++
		retry.next = now.Add(min(d.opts.CancelBackoff<<min(retry.tries-1, 10), 10*time.Minute))
		d.cancels[don.ID] = retry
	}
	for id := range d.cancels {
		if !live[id] && len(ds) < expireBatch {
			delete(d.cancels, id) // settled meanwhile (a webhook, the donor)
		}
	}
}

// expireBatch bounds the expired gifts looked at per round.
const expireBatch = 200

// cancelRetry is one gift's cancel backoff.
type cancelRetry struct {
	tries int
	next  time.Time
}

// cancelExpired cancels one expired gift at the provider and records the
// outcome; false means it must be tried again.
func (d *Dispatcher) cancelExpired(ctx context.Context, don *floodgate.PaymentOrder, tries int) bool {
	if don.PaymentIntentID == "" {
		d.settle(ctx, floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusCanceled,
			From: []floodgate.DonationStatus{floodgate.StatusRequiresAction}, Note: "action timeout", At: d.opts.Clock.Now()})
		return true
	}
	cancelKey := fmt.Sprintf("%s-cancel-%d", don.IdempotencyKey(), tries)
	p, err := d.call(ctx, "cancel", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		return d.provider.CancelPayment(ctx, don.PaymentIntentID, cancelKey)
	})
	var pe *floodgate.ProviderError
	if err != nil && errors.As(err, &pe) && pe.Payment != nil {
		// It could not be canceled because it moved on (succeeded,
		// failed, canceled already): record what it is.
		p, err = pe.Payment, nil
	}
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("dispatch: canceling an expired action failed; will retry with a fresh key", "order", don.ID, "err", err)
		}
		return false
	}
	if p.Status == floodgate.PaymentCanceled {
		d.settle(ctx, floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusCanceled, PaymentIntentID: p.ID,
			From: []floodgate.DonationStatus{floodgate.StatusRequiresAction}, Note: "action timeout", At: d.opts.Clock.Now()})
		return true
	}
	if s, ok := settlementFor(don, p, d.opts.Clock.Now()); ok && s.Status != floodgate.StatusRequiresAction {
		d.settle(ctx, s)
		return true
	}
	return false
}

// PauseSetting is the shared setting that pauses charging on every node.
const PauseSetting = "charging_paused"

// Charging reports whether this node charges now and, while it waits for
// the provider, when it probes next.
func (d *Dispatcher) Charging() (floodgate.ChargingState, time.Time) {
	if d.paused.Load() {
		return floodgate.ChargingPaused, time.Time{}
	}
	if state, until := d.breaker.status(); state != breakerClosed {
		return floodgate.ChargingWaiting, until
	}
	return floodgate.ChargingRunning, time.Time{}
}

// Pause pauses or resumes charging on every node: the switch is a shared
// setting, applied here at once and by other nodes within a second.
func (d *Dispatcher) Pause(ctx context.Context, paused bool) error {
	if err := d.store.SetSetting(ctx, PauseSetting, strconv.FormatBool(paused), d.opts.Clock.Now()); err != nil {
		return err
	}
	d.paused.Store(paused)
	if !paused {
		d.Wake()
	}
	return nil
}

// BreakerState is 0 closed, 1 half-open, 2 open (a metric).
func (d *Dispatcher) BreakerState() float64 {
	state, _ := d.breaker.status()
	return float64(state)
}

// Paused is 1 while an operator has paused charging (a metric).
func (d *Dispatcher) Paused() float64 {
	if d.paused.Load() {
		return 1
	}
	return 0
}

func (d *Dispatcher) refreshPause(ctx context.Context) {
	v, _, err := d.store.Setting(ctx, PauseSetting)
	switch {
	case err == nil:
		d.paused.Store(v == "true")
	case floodgate.ErrorCode(err) == floodgate.ENOTFOUND:
		d.paused.Store(false)
	case ctx.Err() == nil:
		d.log.Warn("dispatch: reading the pause switch failed", "err", err)
	}
}

// waitUnpaused blocks while an operator has paused charging.
func (d *Dispatcher) waitUnpaused(ctx context.Context) error {
	for d.paused.Load() {
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// Ready reports whether this node can serve. An unreachable provider does
// not make it unready: donations are still accepted and kept, and charging
// waits (the contract's "provider reachable or its breaker open"); taking
// every node out of a load balancer during a provider outage would lose
// the very donors floodgate exists to keep. Refused credentials, a
// configuration fault, do make it unready. The note says what charging is
// waiting for, if anything.
func (d *Dispatcher) Ready(ctx context.Context) (note string, err error) {
	if d.cancel == nil {
		return "", errors.New("dispatcher not started")
	}
	return d.health.ready(d.opts.Clock.Now())
}

// unreachableAfter is how long provider calls must only fail before the
// node reports itself not ready.
const unreachableAfter = 30 * time.Second

// providerHealth remembers the provider's recent answers.
type providerHealth struct {
	mu          sync.Mutex
	lastOK      time.Time
	failingFrom time.Time // first failure since the last success; zero when none
	authFailed  bool
}

func (h *providerHealth) record(err error, now time.Time) {
	var pe *floodgate.ProviderError
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil, errors.As(err, &pe) && !pe.Unknown() && pe.Kind != floodgate.ProviderAuth:
		// An answer, even a refusal of the request, means it is there.
		h.lastOK, h.failingFrom, h.authFailed = now, time.Time{}, false
	case errors.As(err, &pe) && pe.Kind == floodgate.ProviderAuth:
		h.authFailed = true
	case errors.Is(err, context.Canceled), errors.Is(err, errKeyExpired):
	default:
		if h.failingFrom.IsZero() {
			h.failingFrom = now
		}
	}
}

func (h *providerHealth) ready(now time.Time) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.authFailed:
		return "", errors.New("the payment provider refuses floodgate's credentials")
	case !h.failingFrom.IsZero() && now.Sub(h.failingFrom) >= unreachableAfter:
		return fmt.Sprintf("the payment provider has not answered since %s; donations are accepted and charging waits",
			h.failingFrom.Format(time.RFC3339)), nil
	}
	return "", nil
}

// up is 1 while the provider answers, 0 while it is unreachable or
// refuses floodgate's credentials.
func (h *providerHealth) up(now time.Time) float64 {
	if note, err := h.ready(now); note != "" || err != nil {
		return 0
	}
	return 1
}
