package ingest

import (
	"hash/maphash"
	"net/netip"
	"time"

	"github.com/floodgate/floodgate"
)

// Guard limits what card testers do before anything is queued or
// charged, and leaves an honest audience alone, even thousands of donors
// behind one address (venue Wi-Fi, a campus, a mobile carrier's NAT).
//
// Card testing shows in outcomes, not in attempts: a tester's cards are
// declined, an audience's mostly go through. So the guard learns every
// settled gift's outcome by its client address, and an address is suspect
// while, over the last ten minutes, its card declines reach DeclineLimit
// and outnumber its successes. Only a suspect address is limited, to
// SuspectAttempts a minute, both when a gift is asked for and again when a
// gift queued from it is about to be charged. Every attempt, from any
// address, also counts against its email address, PerEmail an hour.
//
// Addresses are counted by what one subscriber holds: an IPv4 address, or
// the /64 of an IPv6 one (an IPv4-mapped IPv6 address is the IPv4
// address). Counting is in constant time whatever the number of keys
// tracked: see counter.
type Guard struct {
	perEmail, suspectAttempts, declineLimit int
	clock                                   floodgate.Clock
	seed                                    maphash.Seed

	emails    *counter // attempts per email, over an hour
	declines  *counter // card declines per address, over ten minutes
	successes *counter // successful gifts per address, over ten minutes
	attempts  *counter // attempts per suspect address, over a minute
}

// GuardOptions configure a Guard.
type GuardOptions struct {
	// PerEmail is the attempts one email may make per hour; 0: no limit.
	PerEmail int
	// SuspectAttempts is the attempts a suspect address may make per
	// minute (new gifts, new cards, and queued gifts about to be charged
	// alike); 0 turns the address limit off.
	SuspectAttempts int
	// DeclineLimit is the card declines in ten minutes that make an
	// address suspect, when they also outnumber its successes.
	DeclineLimit int
	// Tracked is the keys each table counts exactly per window; past it,
	// keys are counted in a sketch that can only over-count.
	Tracked int
	// Clock is the guard's time (nil: the system clock).
	Clock floodgate.Clock
}

// The guard's windows.
const (
	emailSpan   = time.Hour
	outcomeSpan = 10 * time.Minute
	attemptSpan = time.Minute
)

// NewGuard returns a Guard.
func NewGuard(o GuardOptions) *Guard {
	if o.Clock == nil {
		o.Clock = floodgate.SystemClock{}
	}
	return &Guard{perEmail: o.PerEmail, suspectAttempts: o.SuspectAttempts, declineLimit: max(o.DeclineLimit, 1),
		clock: o.Clock, seed: maphash.MakeSeed(),
		emails:    newCounter(emailSpan, o.Tracked),
		declines:  newCounter(outcomeSpan, o.Tracked),
		successes: newCounter(outcomeSpan, o.Tracked),
		attempts:  newCounter(attemptSpan, o.Tracked),
	}
}

// Refusal reasons, for metrics.
const (
	LimitAddress = "address"
	LimitEmail   = "email"
)

// Allow counts one attempt (a new gift, or a new card for a declined one)
// from the client address addr for the normalized email, or refuses it
// with ERATELIMITED and the wait until it would be allowed; reason names
// the limit that refused it.
func (g *Guard) Allow(addr, email string) (reason string, err error) {
	now := g.clock.Now()
	if h, ok := g.addressHash(addr); ok && g.suspectAttempts > 0 && g.suspect(h, now) {
		if wait := g.attempts.take(h, g.suspectAttempts, now); wait > 0 {
			return LimitAddress, &floodgate.Error{Code: floodgate.ERATELIMITED, RetryAfter: wait,
				Message: "Too many donation attempts from this address; try again shortly."}
		}
	}
	if g.perEmail > 0 && email != "" {
		if wait := g.emails.take(maphash.String(g.seed, email), g.perEmail, now); wait > 0 {
			return LimitEmail, &floodgate.Error{Code: floodgate.ERATELIMITED, RetryAfter: wait,
				Message: "Too many donation attempts for this email address; try again later."}
		}
	}
	return "", nil
}

// Screen says whether a gift queued from addr may be charged now. A gift
// from an address that is not suspect always may; one from a suspect
// address takes one attempt of the same per-minute allowance as Allow, so
// that gifts queued before the address turned suspect do not all reach
// the provider.
func (g *Guard) Screen(addr string) bool {
	h, ok := g.addressHash(addr)
	if !ok || g.suspectAttempts <= 0 {
		return true
	}
	now := g.clock.Now()
	if !g.suspect(h, now) {
		return true
	}
	return g.attempts.take(h, g.suspectAttempts, now) == 0
}

// Learn records a settled payment's outcome for its payer's client
// address: a card decline or a success. Anything else (a processing error,
// a cancel) says nothing of the address.
func (g *Guard) Learn(o *floodgate.PaymentOrder) {
	h, ok := g.addressHash(o.ClientAddr)
	if !ok {
		return
	}
	switch {
	case o.Status == floodgate.StatusSucceeded:
		g.successes.add(h, g.clock.Now())
	case o.Status == floodgate.StatusFailed && CardDecline(o.FailureCode):
		g.declines.add(h, g.clock.Now())
	}
}

// Suspect reports whether addr is suspect now.
func (g *Guard) Suspect(addr string) bool {
	h, ok := g.addressHash(addr)
	return ok && g.suspect(h, g.clock.Now())
}

// suspect: in the last ten minutes, the address's declines reached the
// limit and outnumber its successes. Declines and successes are kept in
// tables of their own: few addresses decline at all, so the declines'
// table stays small and the first look-up, which settles almost every
// attempt, is cheap however many donors the successes' table holds.
func (g *Guard) suspect(h uint64, now time.Time) bool {
	declines := g.declines.estimate(h, now)
	return declines >= float64(g.declineLimit) && declines > g.successes.estimate(h, now)
}

// CardDecline reports whether a gift's (generic) failure code is a card
// refused by its bank or by authentication: what card testing produces.
// A processing error is the provider's or floodgate's, not the card's.
func CardDecline(code string) bool {
	switch code {
	case "card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "incorrect_number", "authentication_failed":
		return true
	}
	return false
}

// AddressPrefix is what the address limits count a client address under:
// an IPv4 address alone (IPv4-mapped IPv6 included), or the /64 an IPv6
// address belongs to, which is what one subscriber is given. ok is false
// for a string that is not an IP address.
func AddressPrefix(addr string) (p netip.Prefix, ok bool) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, false
	}
	return SubscriberPrefix(ip), true
}

// SubscriberPrefix is the block of addresses one subscriber holds, which
// every per-client count (the card-testing limits, the connection cap)
// counts ip under: an IPv4 address alone (IPv4-mapped IPv6 included), or
// the /64 of an IPv6 one.
func SubscriberPrefix(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32)
	}
	p, _ := ip.Prefix(64)
	return p
}

// addressHash is the key addr is counted under; ok is false for no
// address at all. A string that is not an IP address (a test's, or a
// Unix socket's peer) is counted as itself.
func (g *Guard) addressHash(addr string) (uint64, bool) {
	if addr == "" {
		return 0, false
	}
	p, ok := AddressPrefix(addr)
	if !ok {
		return maphash.String(g.seed, addr), true
	}
	// The masked /64 ends in eight zero bytes and a mapped IPv4 address
	// has 0xffff before its four: the two never share bytes.
	b := p.Addr().As16()
	return maphash.Bytes(g.seed, b[:]), true
}
