package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/startstop"
)

// ExpirerOptions configure an Expirer.
type ExpirerOptions struct {
	// ActionTimeout cancels a gift left in requires_action this long.
	ActionTimeout time.Duration
	// CancelBackoff is the first wait before a failed cancel of an expired
	// gift is tried again; it doubles with each failure, up to ten minutes.
	CancelBackoff time.Duration
	Clock         floodgate.Clock
	Logger        *slog.Logger
}

// Expirer cancels gifts left in requires_action (3-D Secure the donor
// never completed) past the action timeout, at the provider and in the
// store, on any node.
type Expirer struct {
	startstop.Base
	store   floodgate.Line
	link    *Link
	settler *Settler
	opts    ExpirerOptions
	log     *slog.Logger

	// cancels is each gift's cancel backoff; only the run's loop touches
	// it.
	cancels map[string]cancelRetry
}

var _ startstop.Service = (*Expirer)(nil)

// expireBatch bounds the expired gifts looked at per round.
var expireBatch = 200

// cancelRetry is one gift's cancel backoff.
type cancelRetry struct {
	tries int
	next  time.Time
}

// NewExpirer returns an Expirer; nothing runs until Start.
func NewExpirer(store floodgate.Line, link *Link, settler *Settler, opts ExpirerOptions) *Expirer {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.CancelBackoff <= 0 {
		opts.CancelBackoff = 30 * time.Second
	}
	return &Expirer{store: store, link: link, settler: settler, opts: opts, log: logger(opts.Logger)}
}

// Start looks for expired gifts every tenth of the action timeout (between
// a second and thirty, and at least as often as the cancel backoff).
func (e *Expirer) Start(ctx context.Context) error {
	if _, ok := e.StartInit(ctx); !ok {
		return nil
	}
	e.cancels = map[string]cancelRetry{}
	period := min(max(e.opts.ActionTimeout/10, time.Second), e.opts.CancelBackoff, 30*time.Second)
	e.Go(func(ctx context.Context) {
		floodgate.Every(ctx, e.opts.Clock, max(period, 10*time.Millisecond), e.expire)
	})
	return e.StartDone(nil)
}

// expire cancels gifts left in requires_action past the timeout. A cancel
// whose outcome is unknown is tried again later under a fresh key
// (canceling twice does no harm; a key that stored a 5xx would replay it
// for a day), with a backoff per gift, so that a few stuck ones neither
// starve the rest nor spend the budget every round: each round pages
// through every expired gift, expireBatch at a time, not only the oldest.
func (e *Expirer) expire(ctx context.Context) {
	now := e.opts.Clock.Now()
	live := map[string]bool{}
	var after floodgate.ActionCursor
	for {
		ds, err := e.store.ActionExpired(ctx, now.Add(-e.opts.ActionTimeout), after, expireBatch)
		if err != nil {
			if ctx.Err() == nil {
				e.log.Error("dispatch: listing expired actions failed", "err", err)
			}
			return
		}
		for _, don := range ds {
			live[don.ID] = true
			if ctx.Err() != nil {
				return
			}
			retry := e.cancels[don.ID]
			if now.Before(retry.next) {
				continue
			}
			if e.cancelExpired(ctx, don, retry.tries) {
				delete(e.cancels, don.ID)
				continue
			}
			retry.tries++
			retry.next = now.Add(min(e.opts.CancelBackoff<<min(retry.tries-1, 10), 10*time.Minute))
			e.cancels[don.ID] = retry
		}
		if len(ds) < expireBatch {
			break
		}
		after = floodgate.ActionCursorAfter(ds[len(ds)-1])
	}
	for id := range e.cancels {
		if !live[id] {
			delete(e.cancels, id) // settled meanwhile (a webhook, the donor)
		}
	}
}

// cancelExpired cancels one expired gift at the provider and records the
// outcome; false means it must be tried again.
func (e *Expirer) cancelExpired(ctx context.Context, don *floodgate.PaymentOrder, tries int) bool {
	if don.PaymentIntentID == "" {
		e.settler.settle(ctx, floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusCanceled,
			From: []floodgate.DonationStatus{floodgate.StatusRequiresAction}, Note: "action timeout", At: e.opts.Clock.Now()})
		return true
	}
	p, err := e.link.cancel(ctx, don.PaymentIntentID, fmt.Sprintf("%s-cancel-%d", don.IdempotencyKey(), tries))
	var pe *floodgate.ProviderError
	if err != nil && errors.As(err, &pe) && pe.Payment != nil {
		// It could not be canceled because it moved on (succeeded,
		// failed, canceled already): record what it is.
		p, err = pe.Payment, nil
	}
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("dispatch: canceling an expired action failed; will retry with a fresh key", "order", don.ID, "err", err)
		}
		return false
	}
	if p.Status == floodgate.PaymentCanceled {
		e.settler.settle(ctx, floodgate.Settlement{OrderID: don.ID, Status: floodgate.StatusCanceled, PaymentIntentID: p.ID,
			From: []floodgate.DonationStatus{floodgate.StatusRequiresAction}, Note: "action timeout", At: e.opts.Clock.Now()})
		return true
	}
	if s, ok := settlementFor(don, p, e.opts.Clock.Now()); ok && s.Status != floodgate.StatusRequiresAction {
		e.settler.settle(ctx, s)
		return true
	}
	return false
}
