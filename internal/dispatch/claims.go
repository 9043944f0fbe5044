package dispatch

import (
	"sync"

	"github.com/floodgate/floodgate"
)

// heldClaims is every claim a dispatcher holds: each order it claimed and
// has not done with, by id, with its claim's fencing token. The lease
// keeper renews them; Stop releases them.
type heldClaims struct {
	mu sync.Mutex
	m  map[string]int64
}

func (h *heldClaims) add(o *floodgate.PaymentOrder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.m[o.ID] = o.Token
}

func (h *heldClaims) done(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, id)
}

func (h *heldClaims) list() []floodgate.Claim {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]floodgate.Claim, 0, len(h.m))
	for id, token := range h.m {
		out = append(out, floodgate.Claim{Order: id, Token: token})
	}
	return out
}
