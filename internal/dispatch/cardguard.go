package dispatch

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// CardGuardOptions configure a CardGuard.
type CardGuardOptions struct {
	// Block is how long a card (by fingerprint) is refused after a decline
	// a donor could not fix by retyping; 0 turns blocking off.
	Block time.Duration
	// Arm is the cards blocked within ten minutes that arm the check:
	// while armed, each gift's card is looked up before it is charged, and
	// a blocked one is never sent.
	Arm int
	// Screen, when set, is asked before a gift that never reached the
	// provider is charged; false fails it unsent (its client address is
	// suspect and past its allowance).
	Screen func(o *floodgate.PaymentOrder) bool
	Clock  floodgate.Clock
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
}

// CardGuard is the dispatcher's side of the card-testing defence. It
// blocks the card of a decline a donor could not fix; while declines come
// at the pace of card testing (on this node, or cards blocked across the
// nodes) it is armed, and looks each gift's card up before the gift is
// first sent; and it refuses, unsent, a gift with a blocked card or from
// a suspect address (Screen).
type CardGuard struct {
	startstop.Base
	store   floodgate.CardBlocks
	link    *Link
	settler *Settler
	opts    CardGuardOptions
	log     *slog.Logger
	armed   atomic.Bool // card testing suspected: cards are looked up before charging

	mu       sync.Mutex
	declines []time.Time // this node's card-blocking declines, the last ten minutes
}

var (
	_ startstop.Service = (*CardGuard)(nil)
	_ Screen            = (*CardGuard)(nil)
)

// NewCardGuard returns a CardGuard; nothing runs until Start.
func NewCardGuard(store floodgate.CardBlocks, link *Link, settler *Settler, opts CardGuardOptions) *CardGuard {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	return &CardGuard{store: store, link: link, settler: settler, opts: opts, log: logger(opts.Logger)}
}

// Start arms or disarms the check now, and every two seconds, while
// cards are blocked at all.
func (g *CardGuard) Start(ctx context.Context) error {
	ctx, ok := g.StartInit(ctx)
	if !ok {
		return nil
	}
	if g.opts.Block > 0 {
		g.refreshArmed(ctx)
		g.Go(func(ctx context.Context) { floodgate.Every(ctx, g.opts.Clock, 2*time.Second, g.refreshArmed) })
	}
	return g.StartDone(nil)
}

// fixable are decline codes a donor fixes by retyping or authenticating:
// they never block the card.
var fixable = map[string]bool{
	"expired_card": true, "incorrect_cvc": true, "incorrect_number": true, "incorrect_zip": true,
	"processing_error": true, "authentication_required": true, "payment_intent_authentication_failure": true,
}

// Declined learns a card decline: the card is refused for Block, unless
// the donor could fix the decline by retyping.
func (g *CardGuard) Declined(ctx context.Context, fingerprint, code, decline string) {
	if g.opts.Block <= 0 || fingerprint == "" || fixable[code] || fixable[decline] {
		return
	}
	now := g.opts.Clock.Now()
	if err := g.store.BlockFingerprint(ctx, fingerprint, now, now.Add(g.opts.Block)); err != nil && ctx.Err() == nil {
		g.log.Warn("dispatch: blocking a declined card failed", "err", err)
	}
	// Arm at once when declines come at the pace of card testing: waiting
	// for the next refresh would let the next few attempts through.
	g.mu.Lock()
	g.declines = append(recent(g.declines, now), now)
	n := len(g.declines)
	g.mu.Unlock()
	if n >= max(g.opts.Arm, 1) && !g.armed.Swap(true) {
		g.log.Warn("dispatch: card-testing check armed", "card_declines_in_10m", n)
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
func (g *CardGuard) refreshArmed(ctx context.Context) {
	now := g.opts.Clock.Now()
	cards, err := g.store.FingerprintsBlockedSince(ctx, now.Add(-10*time.Minute))
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("dispatch: counting blocked cards failed", "err", err)
		}
		return
	}
	g.mu.Lock()
	g.declines = recent(g.declines, now)
	declines := len(g.declines)
	g.mu.Unlock()
	arm := max(g.opts.Arm, 1)
	armed := declines >= arm || cards >= arm
	if armed != g.armed.Swap(armed) {
		g.log.Warn("dispatch: card-testing check", "armed", armed, "card_declines_in_10m", declines, "cards_blocked_in_10m", cards)
	}
}

// Refuse screens a gift that surely never reached the provider, before it
// is first sent, and fails it unsent when its address is suspect (Screen)
// or its card blocked: gifts queued before an address turned suspect
// would otherwise all reach the provider. The donor may bring another
// card, which is limited as a new gift is.
func (g *CardGuard) Refuse(ctx context.Context, don *floodgate.PaymentOrder) bool {
	if g.opts.Screen != nil && !g.opts.Screen(don) {
		g.refuseUnsent(ctx, don, "address", "processing_error",
			"refused: too many attempts from a suspect address (card-testing defence, address); never sent")
		return true
	}
	return g.cardBlocked(ctx, don)
}

// cardBlocked looks the gift's card up while card testing is suspected,
// and refuses a blocked card without ever sending the charge: the gift
// ends failed with a generic code, and the donor may bring another card.
// A failed look-up lets the charge go (a provider hiccup must not refuse
// donors).
func (g *CardGuard) cardBlocked(ctx context.Context, don *floodgate.PaymentOrder) bool {
	if g.opts.Block <= 0 || !g.armed.Load() {
		return false
	}
	fp, err := g.link.fingerprint(ctx, don.PaymentMethod)
	if err != nil || fp == "" {
		return false
	}
	blocked, err := g.store.FingerprintBlocked(ctx, fp, g.opts.Clock.Now())
	if err != nil || !blocked {
		return false
	}
	g.refuseUnsent(ctx, don, "fingerprint", "card_declined", "card refused: declined before (card-testing defence); never sent")
	return true
}

// refuseUnsent fails a gift that never reached the provider, for the
// card-testing defence's reason, with a failure code the donor may see
// and a history note that says it was never sent, under the claim the
// charger holds.
func (g *CardGuard) refuseUnsent(ctx context.Context, don *floodgate.PaymentOrder, reason, code, note string) {
	if g.opts.Metrics != nil {
		g.opts.Metrics.Blocked.WithLabelValues(reason).Inc()
	}
	g.log.Info("dispatch: gift refused, never sent (card-testing defence)", "order", don.ID, "reason", reason)
	g.settler.settle(ctx, floodgate.Settlement{OrderID: don.ID, Token: don.Token, Status: floodgate.StatusFailed, FailureCode: code,
		Note: note, At: g.opts.Clock.Now()})
}
