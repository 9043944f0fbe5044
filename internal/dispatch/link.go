package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// LinkOptions configure a Link. Every bound comes from configuration.
type LinkOptions struct {
	// Rate bounds PaymentIntent requests per second (create, confirm).
	Rate float64
	// GlobalRate bounds all provider requests per second.
	GlobalRate float64
	// LookupShare bounds the share of GlobalRate that sweeps may take
	// (default DefaultLookupShare), so that lookups never starve charging.
	LookupShare float64
	// SharedBudgets paces against budgets in the store that every node
	// draws on (several nodes on one database); otherwise each node paces
	// alone.
	SharedBudgets bool
	// CallTimeout bounds one provider call. It is a deadline on the
	// network call itself, which runs on the wall clock like the
	// connection under it; every wait of the dispatcher's own runs on
	// Clock.
	CallTimeout time.Duration
	Clock       floodgate.Clock
	Logger      *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// Link is the dispatcher's way to the payment provider, shared by every
// service that calls it: a call waits while charging is paused or the
// breaker is open (Control), then for the rate budgets; it is bounded in
// time, counted in the metrics, and its outcome is reported to Control.
// While it runs, the rates climb back once a second after a cut.
type Link struct {
	startstop.Base
	provider floodgate.Provider
	control  *Control
	opts     LinkOptions
	log      *slog.Logger
	create   gate // PaymentIntent create and confirm
	global   gate // every provider request
	sweep    gate // the sweeps' share of the global budget

	rate  atomic.Uint64 // float64 bits: the PaymentIntent rate allowed now
	sends atomic.Int64  // PaymentIntent requests answered
}

var _ startstop.Service = (*Link)(nil)

// NewLink returns a Link to provider behind control; nothing runs until
// Start. store holds the shared budgets (LinkOptions.SharedBudgets).
func NewLink(store floodgate.Budgets, provider floodgate.Provider, control *Control, opts LinkOptions) *Link {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	l := &Link{provider: provider, control: control, opts: opts, log: logger(opts.Logger)}
	now := opts.Clock.Now()
	if opts.LookupShare <= 0 || opts.LookupShare > 1 {
		opts.LookupShare = DefaultLookupShare
	}
	l.opts.LookupShare = opts.LookupShare
	l.create, l.global = newPacer(opts.Rate, now, opts.Clock), newPacer(opts.GlobalRate, now, opts.Clock)
	// One sweeper works for the cluster at a time, so its share is paced
	// where it runs; its pages still draw on the shared global budget. A
	// share under one page a second would leave unknown outcomes waiting
	// for minutes: sweeps take at least that (or the whole global rate,
	// when it is lower).
	l.sweep = newPacer(max(opts.LookupShare*opts.GlobalRate, min(opts.GlobalRate, 1)), now, opts.Clock)
	if opts.SharedBudgets {
		l.create = newSharedGate(store, floodgate.BudgetPaymentIntents, opts.Rate, opts.Clock, l.log)
		l.global = newSharedGate(store, floodgate.BudgetProvider, opts.GlobalRate, opts.Clock, l.log)
	}
	l.rate.Store(math.Float64bits(opts.Rate))
	return l
}

// Start grows the rates back once a second after a cut.
func (l *Link) Start(ctx context.Context) error {
	if _, ok := l.StartInit(ctx); !ok {
		return nil
	}
	l.Go(func(ctx context.Context) { floodgate.Every(ctx, l.opts.Clock, time.Second, l.grow) })
	return l.StartDone(nil)
}

// charging is Control's answer: whether calls go now and, while the
// breaker waits for the provider, when it probes next.
func (l *Link) charging() (floodgate.ChargingState, time.Time) { return l.control.Charging() }

// probeDue reports whether the breaker waits for a probe now.
func (l *Link) probeDue() bool { return l.control.probeDue() }

// onResume registers f to be told when an operator resumes charging.
func (l *Link) onResume(f func()) { l.control.onResume(f) }

// Rate is the PaymentIntent requests per second allowed now.
func (l *Link) Rate() float64 { return math.Float64frombits(l.rate.Load()) }

// Configured is the PaymentIntent rate configured.
func (l *Link) Configured() float64 { return l.opts.Rate }

func (l *Link) grow(ctx context.Context) {
	now := l.opts.Clock.Now()
	l.create.Grow(now)
	l.global.Grow(now)
	l.publishRate()
}

func (l *Link) publishRate() {
	r := l.create.Rate()
	l.rate.Store(math.Float64bits(r))
	if l.opts.Metrics != nil {
		l.opts.Metrics.AllowedRate.Set(r)
	}
}

// slowDown reports a 429: the budget of every request is cut, and with
// payments that of PaymentIntent requests too.
func (l *Link) slowDown(payments bool) {
	now := l.opts.Clock.Now()
	if payments {
		l.create.SlowDown(now)
	}
	l.global.SlowDown(now)
	l.publishRate()
}

// errKeyExpired says a request was not sent because its idempotency key
// could have been forgotten by the provider by the time it arrived.
var errKeyExpired = errors.New("dispatch: the provider may no longer keep this idempotency key")

// charge creates or confirms a PaymentIntent, within the PaymentIntent
// budget; it is not sent (errKeyExpired) once deadline has passed.
func (l *Link) charge(ctx context.Context, req floodgate.ChargeRequest, deadline time.Time) (*floodgate.Payment, error) {
	op := "create"
	if req.PaymentIntentID != "" {
		op = "confirm"
	}
	return l.call(ctx, op, true, deadline, func(ctx context.Context) (*floodgate.Payment, error) { return l.provider.Charge(ctx, req) })
}

// payment retrieves a PaymentIntent.
func (l *Link) payment(ctx context.Context, id string) (*floodgate.Payment, error) {
	return l.call(ctx, "retrieve", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		return l.provider.Payment(ctx, id)
	})
}

// findPayments lists one page of PaymentIntents.
func (l *Link) findPayments(ctx context.Context, q floodgate.PaymentQuery) (floodgate.PaymentPage, error) {
	var page floodgate.PaymentPage
	_, err := l.call(ctx, "list", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		var err error
		page, err = l.provider.FindPayments(ctx, q)
		return nil, err
	})
	return page, err
}

// sweepPage lists one page of a sweep: within the sweeps' share of the
// global budget, then the global budget itself.
func (l *Link) sweepPage(ctx context.Context, q floodgate.PaymentQuery) (floodgate.PaymentPage, error) {
	if err := l.sweep.Wait(ctx); err != nil {
		return floodgate.PaymentPage{}, err
	}
	if m := l.opts.Metrics; m != nil {
		m.Lookups.WithLabelValues("list_page").Inc()
	}
	return l.findPayments(ctx, q)
}

// probeClock makes one request that lists no PaymentIntent (created in
// the first second of 1970), within the sweeps' share, so that its answer
// dates the provider's clock; a failure leaves the clock unknown.
func (l *Link) probeClock(ctx context.Context) {
	epoch := time.Unix(1, 0)
	if _, err := l.sweepPage(ctx, floodgate.PaymentQuery{CreatedFrom: epoch, CreatedTo: epoch}); err != nil && ctx.Err() == nil {
		l.log.Debug("dispatch: probing the provider's clock failed", "err", err)
	}
}

// providerClock bounds the provider's clock, from its answers so far.
func (l *Link) providerClock() floodgate.ProviderClock { return l.provider.Clock() }

// cancel cancels a PaymentIntent under key.
func (l *Link) cancel(ctx context.Context, id, key string) (*floodgate.Payment, error) {
	return l.call(ctx, "cancel", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		return l.provider.CancelPayment(ctx, id, key)
	})
}

// refund refunds a second payment for one order in full.
func (l *Link) refund(ctx context.Context, paymentIntentID string) (string, error) {
	var id string
	_, err := l.call(ctx, "refund", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		var err error
		id, err = l.provider.RefundPayment(ctx, paymentIntentID, "floodgate-refund-"+paymentIntentID)
		return nil, err
	})
	return id, err
}

// fingerprint looks up the card behind a payment method.
func (l *Link) fingerprint(ctx context.Context, paymentMethod string) (string, error) {
	var fp string
	_, err := l.call(ctx, "payment_method", false, time.Time{}, func(ctx context.Context) (*floodgate.Payment, error) {
		var err error
		fp, err = l.provider.CardFingerprint(ctx, paymentMethod)
		return nil, err
	})
	return fp, err
}

// call waits for the pause switch, the breaker and the budgets (paced:
// the PaymentIntent budget too), then makes one provider call with the
// call timeout, recording metrics. With a deadline, the call is not made
// (and errKeyExpired returned) once the deadline has passed.
func (l *Link) call(ctx context.Context, op string, paced bool, deadline time.Time, f func(context.Context) (*floodgate.Payment, error)) (*floodgate.Payment, error) {
	if err := l.control.waitUnpaused(ctx); err != nil {
		return nil, err
	}
	probe, err := l.control.allow(ctx)
	if err != nil {
		return nil, err
	}
	p, err := l.send(ctx, op, paced, deadline, f)
	l.control.record(err, probe)
	return p, err
}

// send waits for the budgets and makes the call.
func (l *Link) send(ctx context.Context, op string, paced bool, deadline time.Time, f func(context.Context) (*floodgate.Payment, error)) (*floodgate.Payment, error) {
	if paced {
		if err := l.create.Wait(ctx); err != nil {
			return nil, err
		}
	}
	if err := l.global.Wait(ctx); err != nil {
		return nil, err
	}
	if !deadline.IsZero() && !l.opts.Clock.Now().Before(deadline) {
		return nil, errKeyExpired
	}
	cctx, cancel := context.WithTimeout(ctx, l.opts.CallTimeout)
	defer cancel()
	start := time.Now()
	p, err := f(cctx)
	if m := l.opts.Metrics; m != nil {
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
	l.control.health.record(err, l.opts.Clock.Now())
	if err == nil && paced {
		l.sends.Add(1)
	}
	return p, err
}
