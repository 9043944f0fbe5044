package httpapi

import (
	"sync"
	"time"
)

// Admin authentication throttling: after adminFailures wrong or missing
// tokens from one address within adminFailWindow, that address is
// refused 429 until the window ends, before its token is even looked at.
// A generated token has 256 random bits and a configured one at least 32
// characters, so guessing is hopeless anyway; the throttle keeps a
// guesser from costing the node anything and makes the attempt visible.
const (
	adminFailures   = 10
	adminFailWindow = time.Minute
	// adminTracked bounds the addresses remembered. Past it, every new
	// address shares one count: failing attempts from a crowd are then
	// throttled together, which is safe (the operator's own address
	// still gets in once the minute ends), where forgetting would not be.
	adminTracked = 4096
)

// adminThrottle counts failed admin authentications per address. Only
// failures are tracked, so the map stays small.
type adminThrottle struct {
	mu    sync.Mutex
	fails map[string]*adminFails
	swept time.Time
}

type adminFails struct {
	start time.Time
	n     int
}

// adminShared is the key every address shares once the map is full.
const adminShared = "*"

// key is the count addr is kept under.
func (t *adminThrottle) key(addr string) string {
	if _, ok := t.fails[addr]; ok || len(t.fails) < adminTracked {
		return addr
	}
	return adminShared
}

// wait returns how long addr must wait before its next admin attempt
// (0: it may try now).
func (t *adminThrottle) wait(addr string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.fails[t.key(addr)]
	if f == nil || f.n < adminFailures || now.Sub(f.start) >= adminFailWindow {
		return 0
	}
	return f.start.Add(adminFailWindow).Sub(now)
}

// failed counts one failed attempt from addr and reports whether it was
// the one that starts the throttle.
func (t *adminThrottle) failed(addr string, now time.Time) (throttled bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fails == nil {
		t.fails = map[string]*adminFails{}
	}
	if len(t.fails) >= adminTracked && now.Sub(t.swept) >= time.Second {
		t.swept = now
		for k, f := range t.fails {
			if now.Sub(f.start) >= adminFailWindow {
				delete(t.fails, k)
			}
		}
	}
	k := t.key(addr)
	f := t.fails[k]
	if f == nil || now.Sub(f.start) >= adminFailWindow {
		f = &adminFails{start: now}
		t.fails[k] = f
	}
	f.n++
	return f.n == adminFailures
}
