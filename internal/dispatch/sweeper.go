package dispatch

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// SweeperLease is the name of the lease that lets one sweeper at a time
// work for every node on a store.
const SweeperLease = "sweeper"

// DefaultLookupShare is the share of the provider's global rate that
// sweeps may take by default.
const DefaultLookupShare = 0.2

// windowMargin widens an order's window on both sides beyond what the
// provider's Date headers bound (see floodgate.ProviderClock).
const windowMargin = time.Second

// SweeperOptions configure a Sweeper.
type SweeperOptions struct {
	// Owner names this node in the sweeper's lease.
	Owner string
	// Every is how often a sweep may start (default 2s).
	Every time.Duration
	// Lease is how long the sweeper's lease lasts unless renewed (default
	// 15 sweeps, at least 30s): another node's sweeper takes over after
	// it when this one dies.
	Lease time.Duration
	// MaxOrders bounds the unknown orders one sweep looks for (default
	// 10,000); the rest wait for the next.
	MaxOrders int
	Policy    Policy
	Clock     floodgate.Clock
	Logger    *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// SweeperStore is what a Sweeper needs of the store.
type SweeperStore interface {
	floodgate.Sweeps
	Settle(ctx context.Context, s floodgate.Settlement) (*floodgate.PaymentOrder, error)
}

// Sweeper establishes the outcomes that may or may not have happened, for
// every order at once: one paged pass over the PaymentIntents created in
// the windows of the unknown orders settles every order whose payment it
// finds, matched by metadata, so that the provider requests spent grow
// with the PaymentIntents created in those windows, not with the number of
// unknown orders. An order no sweep found is moved to a new key only after
// floodgate.AbsenceSweeps complete sweeps, each begun at least a second
// after its window ended and floodgate.SweepGap after the one before, found nothing
// (see sweep). One sweeper works for the cluster at a time, under a lease
// in the store; what the sweeps proved is recorded on the orders, so a
// restart does not sweep it again.
type Sweeper struct {
	startstop.Base
	store   SweeperStore
	link    *Link
	settler *Settler
	opts    SweeperOptions
	log     *slog.Logger
	holds   bool // the lease, as last taken (the loop's goroutine only)
}

var _ startstop.Service = (*Sweeper)(nil)

// NewSweeper returns a Sweeper looking through link and recording through
// settler.
func NewSweeper(store SweeperStore, link *Link, settler *Settler, opts SweeperOptions) *Sweeper {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Every <= 0 {
		opts.Every = 2 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = max(15*opts.Every, 30*time.Second)
	}
	if opts.MaxOrders <= 0 {
		opts.MaxOrders = 10_000
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	return &Sweeper{store: store, link: link, settler: settler, opts: opts, log: logger(opts.Logger)}
}

// Start runs the sweeps until Stop; Stop gives the lease up.
func (s *Sweeper) Start(ctx context.Context) error {
	ctx, ok := s.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer s.Stopped()
		s.loop(ctx)
	}()
	return s.StartDone(nil)
}

func (s *Sweeper) loop(ctx context.Context) {
	defer func() {
		if s.holds {
			if err := s.store.ReleaseLease(context.WithoutCancel(ctx), SweeperLease, s.opts.Owner); err != nil {
				s.log.Warn("dispatch: giving the sweeper's lease up failed; another node takes it when it runs out", "err", err)
			}
		}
	}()
	timer := s.opts.Clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		s.round(ctx)
		timer.Reset(s.opts.Every)
	}
}

// round takes or renews the lease, then sweeps once if it holds it.
func (s *Sweeper) round(ctx context.Context) {
	ok, err := s.store.TakeLease(ctx, SweeperLease, s.opts.Owner, s.opts.Lease)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("dispatch: taking the sweeper's lease failed", "err", err)
		}
		return
	}
	if ok != s.holds {
		s.log.Info("dispatch: sweeper lease", "held", ok, "owner", s.opts.Owner)
	}
	if s.holds = ok; !ok {
		return
	}
	if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("dispatch: sweep failed; the unknown outcomes wait for the next", "err", err)
	}
}

// sweep runs one sweep: it lists the PaymentIntents created in the
// windows of the unknown orders that are due, settles every order whose
// payment it finds, records a complete sweep on the others, and moves to a
// new key each order that floodgate.AbsenceSweeps complete sweeps found
// nothing for.
//
// Why no PaymentIntent an order made can be missed: the order's window
// runs from its key's first use to the moment it was handed over (after
// the key's last answer), in the provider's clock, bounded by the Date of
// the provider's own answers and widened by windowMargin (see
// floodgate.ProviderClock), so the PaymentIntent's created time is in it.
// An order is due only once its window ended at least a second before the
// earliest the provider's clock can read as the sweep starts: no
// PaymentIntent stamped within the window can still be created after the
// sweep began reading, unless the provider itself makes one later (its
// own recovery of a 5xx), which is why absence takes two complete sweeps
// at least floodgate.SweepGap apart (the second measured from the latest the
// provider's clock could have read at the first), and why a settlement
// from a webhook in between ends the order's unknown state, so the new
// key (written compare-and-set on the order's generation and sweeps) is
// refused. The list is the PaymentIntents themselves, created in the
// window, newest first, page by page, never Search, which lags; a page
// that fails after its retries makes the sweep incomplete, and an
// incomplete sweep proves nothing absent.
func (s *Sweeper) sweep(ctx context.Context) error {
	orders, err := s.store.Unknowns(ctx, s.opts.MaxOrders)
	if err != nil {
		return err
	}
	now := s.opts.Clock.Now()
	clock := s.link.providerClock()
	startLow, startHigh := now.Add(-lookupSkew), now.Add(lookupSkew)
	if clock.Known {
		startLow, startHigh = now.Add(clock.Low), now.Add(clock.High)
	}
	s.gauge(orders, startHigh)
	var due []*floodgate.PaymentOrder
	for _, o := range orders {
		if sweepDue(o, startLow) {
			due = append(due, o)
		}
	}
	if len(due) == 0 {
		return nil
	}
	span := floodgate.Window{From: *due[0].UnknownFrom, To: *due[0].UnknownTo}
	for _, o := range due[1:] {
		if o.UnknownFrom.Before(span.From) {
			span.From = *o.UnknownFrom
		}
		if o.UnknownTo.After(span.To) {
			span.To = *o.UnknownTo
		}
	}
	found, complete := s.list(ctx, span, orders)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if m := s.opts.Metrics; m != nil {
		outcome := "complete"
		if !complete {
			outcome = "incomplete"
		}
		m.Sweeps.WithLabelValues(outcome).Inc()
	}
	for _, o := range orders {
		if ps := found[o.ID]; len(ps) > 0 {
			s.resolve(ctx, o, ps)
		}
	}
	if !complete {
		return nil
	}
	var swept []floodgate.SweptOrder
	var last []*floodgate.PaymentOrder
	for _, o := range due {
		if len(found[o.ID]) > 0 {
			continue
		}
		swept = append(swept, floodgate.SweptOrder{ID: o.ID, Attempt: o.Attempt, Sweeps: o.Sweeps})
		if o.Sweeps+1 >= floodgate.AbsenceSweeps {
			last = append(last, o)
		}
	}
	if len(swept) == 0 {
		return nil
	}
	if _, err := s.store.RecordSweep(ctx, swept, floodgate.SweepStart{Earliest: startLow, Latest: startHigh}, now); err != nil {
		return err
	}
	for _, o := range last {
		nd, err := s.store.SweptNewKey(ctx, o.ID, o.Attempt, "", now)
		switch {
		case err == nil && nd.Status == floodgate.StatusFailed:
			s.log.Error("dispatch: giving up after repeated unknown outcomes with no payment", "order", o.ID, "cause", o.UnknownCause,
				"absences", o.Absences+1)
			s.resolved("absent")
			s.settler.recorded(nd, string(nd.Status), true)
		case err == nil:
			s.log.Info("dispatch: no payment exists; the order takes a new key", "order", o.ID, "attempt", nd.Attempt,
				"window", floodgate.Window{From: *o.UnknownFrom, To: *o.UnknownTo})
			s.resolved("absent")
		case floodgate.ErrorCode(err) == floodgate.ESTATE:
			// Settled meanwhile (a webhook), or another sweep got there.
			s.log.Debug("dispatch: no new key after the sweep", "order", o.ID, "err", err)
		default:
			s.log.Warn("dispatch: recording a new key after the sweeps failed; the next sweep tries again", "order", o.ID, "err", err)
		}
	}
	return nil
}

// sweepDue reports whether a sweep starting when the provider's clock
// reads startLow at the earliest may count for o: o's window ended at
// least a second before, and, after a first sweep, the last one started
// at least floodgate.SweepGap before.
func sweepDue(o *floodgate.PaymentOrder, startLow time.Time) bool {
	if o.UnknownFrom == nil || o.UnknownTo == nil || o.UnknownTo.Add(floodgate.SweepAfterWindow).After(startLow) {
		return false
	}
	return o.SweptAt == nil || !o.SweptAt.Add(floodgate.SweepGap).After(startLow)
}

// list reads every page of the PaymentIntents created in span and returns
// those that name an order of orders, by order id, and whether every page
// was read.
func (s *Sweeper) list(ctx context.Context, span floodgate.Window, orders []*floodgate.PaymentOrder) (map[string][]*floodgate.Payment, bool) {
	byRef := make(map[floodgate.PaymentRef]*floodgate.PaymentOrder, len(orders))
	for _, o := range orders {
		byRef[floodgate.RefOf(o.Lookup())] = o
	}
	found := map[string][]*floodgate.Payment{}
	q := floodgate.PaymentQuery{CreatedFrom: span.From, CreatedTo: span.To}
	for {
		var page floodgate.PaymentPage
		err := s.retry(ctx, func() (err error) {
			page, err = s.link.sweepPage(ctx, q)
			return err
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("dispatch: a sweep's page failed; the sweep proves nothing absent", "window", span, "err", err)
			}
			return found, false
		}
		for _, p := range page.Payments {
			o := byRef[refOfPayment(p)]
			switch {
			case o == nil:
			case p.Amount != o.Amount || !strings.EqualFold(p.Currency, o.Currency):
				// It names the order, but is not a charge of it.
				incident(s.log, s.opts.Metrics, "foreign_payment", "a PaymentIntent names an order it does not belong to",
					"order", o.ID, "payment_intent", p.ID, "amount", p.Amount, "currency", p.Currency)
			default:
				found[o.ID] = append(found[o.ID], p)
			}
		}
		if !page.More || page.Last == "" {
			return found, true
		}
		q.After = page.Last
	}
}

// refOfPayment is the order reference p's metadata names, in the form an
// order's Lookup names it (a donation's order is looked up by its
// donation, in every request format).
func refOfPayment(p *floodgate.Payment) floodgate.PaymentRef {
	r := floodgate.RefOf(p.Metadata)
	if r.Kind == floodgate.KindDonation {
		return floodgate.PaymentRef{Kind: floodgate.KindDonation, PaysFor: r.PaysFor}
	}
	return floodgate.PaymentRef{Order: r.Order}
}

// resolve settles o by the payments a sweep found for it: a succeeded one
// if any, else the newest. Two payments for one order are an incident.
func (s *Sweeper) resolve(ctx context.Context, o *floodgate.PaymentOrder, ps []*floodgate.Payment) {
	best := pick(o, ps, s.log, s.opts.Metrics)
	s.resolved("found")
	for _, p := range ps {
		if p != best && p.Status == floodgate.PaymentSucceeded {
			_ = refundSecond(ctx, s.link, s.opts.Policy, s.opts.Clock, s.log, s.opts.Metrics, o, p.ID)
		}
	}
	now := s.opts.Clock.Now()
	if st, ok := settlementFor(o, best, now); ok {
		st.Note = "found by a sweep (" + best.ID + ")"
		if got := s.settler.settle(ctx, st); secondPayment(st, got) {
			_ = refundSecond(ctx, s.link, s.opts.Policy, s.opts.Clock, s.log, s.opts.Metrics, got, best.ID)
		}
		return
	}
	switch best.Status {
	case floodgate.PaymentRequiresConfirmation:
		if _, err := s.store.SweptNewKey(ctx, o.ID, o.Attempt, best.ID, now); err != nil && floodgate.ErrorCode(err) != floodgate.ESTATE {
			s.log.Warn("dispatch: recording a PaymentIntent to confirm failed; the next sweep finds it again", "order", o.ID, "payment_intent", best.ID, "err", err)
		}
	case floodgate.PaymentProcessing:
		// Its outcome arrives by webhook, or a later sweep finds it final.
	default:
		incident(s.log, s.opts.Metrics, "stray_status", "a PaymentIntent in a status floodgate never asks for", "order", o.ID,
			"payment_intent", best.ID, "status", best.Status)
	}
}

// pick chooses, among the payments found for o, the one that says what
// became of it: a succeeded one, else the newest. More than one payment
// for one order is an incident, two succeeded ones a double charge.
func pick(o *floodgate.PaymentOrder, ps []*floodgate.Payment, log *slog.Logger, m *metrics.Metrics) *floodgate.Payment {
	var best *floodgate.Payment
	succeeded := 0
	for _, p := range ps {
		if p.Status == floodgate.PaymentSucceeded {
			succeeded++
		}
		if best == nil || (p.Status == floodgate.PaymentSucceeded && best.Status != floodgate.PaymentSucceeded) ||
			(p.Status == best.Status && p.Created.After(best.Created)) {
			best = p
		}
	}
	if len(ps) > 1 {
		ids := make([]string, len(ps))
		for i, p := range ps {
			ids[i] = p.ID
		}
		if succeeded < 2 { // two succeeded: refundSecond reports each
			incident(log, m, "second_payment", "more than one payment for one order", "order", o.ID, "payment_intents", ids)
		}
	}
	return best
}

// incident logs what contradicts floodgate's records, and counts it.
func incident(log *slog.Logger, m *metrics.Metrics, kind, msg string, args ...any) {
	log.Error("dispatch: incident: "+msg, append([]any{"incident", kind}, args...)...)
	if m != nil {
		m.Incidents.WithLabelValues(kind).Inc()
	}
}

// retry runs f as a lookup's request (see retryLookup).
func (s *Sweeper) retry(ctx context.Context, f func() error) error {
	return retryLookup(ctx, s.link, s.opts.Policy, s.opts.Clock, f)
}

// gauge publishes the unknown orders a sweep saw (the earliest window
// first) and the age of the oldest.
func (s *Sweeper) gauge(orders []*floodgate.PaymentOrder, providerNow time.Time) {
	m := s.opts.Metrics
	if m == nil {
		return
	}
	m.Unknown.Set(float64(len(orders)))
	age := 0.0
	if len(orders) > 0 && orders[0].UnknownFrom != nil {
		age = max(providerNow.Sub(*orders[0].UnknownFrom).Seconds(), 0)
	}
	m.UnknownAge.Set(age)
}

func (s *Sweeper) resolved(outcome string) {
	if m := s.opts.Metrics; m != nil {
		m.SweepResolved.WithLabelValues(outcome).Inc()
	}
}
