package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// unreachableAfter is how long provider calls must only fail before the
// node reports itself not ready.
const unreachableAfter = 30 * time.Second

// providerHealth remembers the provider's recent answers.
type providerHealth struct {
	mu          sync.Mutex
	lastOK      time.Time
	failingFrom time.Time // first failure since the last success; zero when none
	authFailed  bool
}

func (h *providerHealth) record(err error, now time.Time) {
	var pe *floodgate.ProviderError
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil, errors.As(err, &pe) && !pe.Unknown() && pe.Kind != floodgate.ProviderAuth:
		// An answer, even a refusal of the request, means it is there.
		h.lastOK, h.failingFrom, h.authFailed = now, time.Time{}, false
	case errors.As(err, &pe) && pe.Kind == floodgate.ProviderAuth:
		h.authFailed = true
	case errors.Is(err, context.Canceled), errors.Is(err, errKeyExpired):
	default:
		if h.failingFrom.IsZero() {
			h.failingFrom = now
		}
	}
}

func (h *providerHealth) ready(now time.Time) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.authFailed:
		return "", errors.New("the payment provider refuses floodgate's credentials")
	case !h.failingFrom.IsZero() && now.Sub(h.failingFrom) >= unreachableAfter:
		return fmt.Sprintf("the payment provider has not answered since %s; donations are accepted and charging waits",
			h.failingFrom.Format(time.RFC3339)), nil
	}
	return "", nil
}

// up is 1 while the provider answers, 0 while it is unreachable or
// refuses floodgate's credentials.
func (h *providerHealth) up(now time.Time) float64 {
	if note, err := h.ready(now); note != "" || err != nil {
		return 0
	}
	return 1
}
