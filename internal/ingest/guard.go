package ingest

import (
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// Guard limits donation attempts per client address and per email address
// before anything is queued, against card testing: thousands of small
// attempts from one address, or one person's cards tried under many
// names. A refused attempt costs no write and never reaches the provider.
// Counts are kept per fixed window (a minute per address, an hour per
// email), for at most Tracked keys: past that, expired windows are swept,
// and an attempt that still finds no room is let through uncounted rather
// than refusing donors because an attacker filled the table.
type Guard struct {
	PerAddress int // attempts per minute; 0 means no limit
	PerEmail   int // attempts per hour; 0 means no limit
	Tracked    int

	mu     sync.Mutex
	addrs  map[string]*window
	emails map[string]*window
}

type window struct {
	start time.Time
	n     int
}

// Refusal reasons, for metrics.
const (
	LimitAddress = "address"
	LimitEmail   = "email"
)

// Allow counts one attempt from addr for email at now, or refuses it with
// ERATELIMITED and the wait until the window frees; reason names the
// limit that refused it.
func (g *Guard) Allow(addr, email string, now time.Time) (reason string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.addrs == nil {
		g.addrs, g.emails = map[string]*window{}, map[string]*window{}
	}
	if wait := g.count(g.addrs, addr, g.PerAddress, time.Minute, now); wait > 0 {
		return LimitAddress, &floodgate.Error{Code: floodgate.ERATELIMITED, RetryAfter: wait,
			Message: "Too many donation attempts from this address; try again shortly."}
	}
	if wait := g.count(g.emails, email, g.PerEmail, time.Hour, now); wait > 0 {
		return LimitEmail, &floodgate.Error{Code: floodgate.ERATELIMITED, RetryAfter: wait,
			Message: "Too many donation attempts for this email address; try again later."}
	}
	return "", nil
}

// count adds an attempt to key's window and returns how long to wait when
// it is over limit (0: allowed).
func (g *Guard) count(m map[string]*window, key string, limit int, span time.Duration, now time.Time) time.Duration {
	if limit <= 0 || key == "" {
		return 0
	}
	w := m[key]
	if w == nil {
		if len(g.addrs)+len(g.emails) >= max(g.Tracked, 1) {
			g.sweep(now)
			if len(g.addrs)+len(g.emails) >= max(g.Tracked, 1) {
				return 0
			}
		}
		w = &window{start: now}
		m[key] = w
	}
	if now.Sub(w.start) >= span {
		w.start, w.n = now, 0
	}
	if w.n >= limit {
		return w.start.Add(span).Sub(now)
	}
	w.n++
	return 0
}

// sweep forgets windows that have ended.
func (g *Guard) sweep(now time.Time) {
	for k, w := range g.addrs {
		if now.Sub(w.start) >= time.Minute {
			delete(g.addrs, k)
		}
	}
	for k, w := range g.emails {
		if now.Sub(w.start) >= time.Hour {
			delete(g.emails, k)
		}
	}
}
