package dispatch

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
)

// SettlerOptions configure a Settler.
type SettlerOptions struct {
	// Policy's backoff spaces the tries of a store write that failed.
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
	// by a dispatcher or from a webhook, never for a refund or a dispute:
	// the card-testing defence learns each address's declines and
	// successes.
	Outcome func(o *floodgate.PaymentOrder)
}

// Settler records what became of gifts for every service of the
// dispatcher: a settlement is written until the store takes it or refuses
// the move, counted, and told to the live totals and to the card-testing
// defence. It runs nothing of its own.
type Settler struct {
	store floodgate.Line
	opts  SettlerOptions
	log   *slog.Logger
}

// NewSettler returns a Settler writing to store.
func NewSettler(store floodgate.Line, opts SettlerOptions) *Settler {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.Policy == (Policy{}) {
		opts.Policy = DefaultPolicy
	}
	return &Settler{store: store, opts: opts, log: logger(opts.Logger)}
}

// settle records a settlement. The payment outcome is known and must not
// be lost; if this process dies first, the lease lapses and the same key
// returns the same outcome.
//
// It returns the order as the store left it when the settlement was
// refused because the order had moved on (ESTATE), so that a caller can
// tell a second payment for one order (see secondPayment); nil otherwise.
func (s *Settler) settle(ctx context.Context, st floodgate.Settlement) (refusedAt *floodgate.PaymentOrder) {
	var don *floodgate.PaymentOrder
	err := s.persist(ctx, "recording a settlement", st.OrderID, func() (err error) {
		don, err = s.store.Settle(ctx, st)
		return err
	})
	switch {
	case err == nil:
		s.recorded(don, string(st.Status), true)
	case floodgate.ErrorCode(err) == floodgate.ESTATE:
		// Already moved on (a webhook got there first), or no longer this
		// dispatcher's (its lease ran out and another took the order
		// over: the store kept the late result as history): nothing to do.
		s.log.Debug("dispatch: settlement not applied", "order", st.OrderID, "status", st.Status, "err", err)
		return don
	}
	return nil
}

// recorded counts a change the store took (what: the status or the
// reversal) and tells those who follow them: the card-testing defence
// only of a charge's outcome.
func (s *Settler) recorded(don *floodgate.PaymentOrder, what string, charge bool) {
	if s.opts.Metrics != nil {
		s.opts.Metrics.Settled.WithLabelValues(what).Inc()
	}
	if charge && s.opts.Outcome != nil {
		s.opts.Outcome(don)
	}
	if s.opts.Settled != nil {
		s.opts.Settled(don)
	}
}

// persist runs write until the store takes it, refuses the move (ESTATE,
// returned), or ctx ends, backing off between tries: a write the
// dispatcher's promises depend on is never given up on a store failure.
func (s *Settler) persist(ctx context.Context, what, orderID string, write func() error) error {
	for try := 0; ; try++ {
		err := write()
		if err == nil || floodgate.ErrorCode(err) == floodgate.ESTATE || ctx.Err() != nil {
			return err
		}
		s.log.Error("dispatch: "+what+" failed; retrying", "order", orderID, "err", err)
		if !floodgate.Sleep(ctx, s.opts.Clock, s.opts.Policy.Backoff(try, rand.Float64())+100*time.Millisecond) {
			return ctx.Err()
		}
	}
}
