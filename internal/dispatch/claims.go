package dispatch

import (
	"sync"

	"github.com/floodgate/floodgate"
)

// heldClaims is every claim a dispatcher holds: each order it claimed and
// has not done with, by id. The lease keeper renews them; Stop releases
// them.
type heldClaims struct {
	mu sync.Mutex
	m  map[string]floodgate.Claim
}

func (h *heldClaims) add(o *floodgate.PaymentOrder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[o.ID] = o.Claim()
}

// done forgets o's claim, unless a newer claim of this dispatcher took the
// order over meanwhile (the first one's lease ran out while it worked).
func (h *heldClaims) done(o *floodgate.PaymentOrder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m[o.ID].Token == o.Token {
		delete(h.m, o.ID)
	}
}

func (h *heldClaims) list() []floodgate.Claim {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]floodgate.Claim, 0, len(h.m))
	for _, c := range h.m {
		out = append(out, c)
	}
	return out
}
