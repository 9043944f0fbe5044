package stripe

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// transport is the HTTP layer under stripe-go. It does two things:
//
// It stops net/http from replaying a request by itself. net/http retries a
// request whose connection died before an answer when the request is
// "replayable", and a POST carrying an Idempotency-Key with a GetBody (as
// stripe-go builds them) is. That replay is safe but invisible, and
// floodgate's rule is that every attempt is the dispatcher's, paced and
// counted. Removing GetBody makes the request non-replayable.
//
// It records the status and headers of the answer, so that a failure
// stripe-go cannot decode (a proxy's HTML 502, a body cut short) still
// tells what came back.
//
// It reads the provider's clock off every answer's Date header (see
// floodgate.ProviderClock), so that a lookup's window is bounded in the
// provider's clock, where PaymentIntents are stamped.
type transport struct {
	base http.RoundTripper
	now  func() time.Time

	mu    sync.Mutex
	clock floodgate.ProviderClock
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.GetBody = nil
	sent := t.now()
	resp, err := t.base.RoundTrip(r2)
	if resp != nil {
		if date, derr := http.ParseTime(resp.Header.Get("Date")); derr == nil {
			received := t.now()
			t.mu.Lock()
			t.clock = t.clock.Observe(sent, received, date)
			t.mu.Unlock()
		}
		if x, ok := r.Context().Value(exchangeKey{}).(*exchange); ok {
			x.set(resp.StatusCode, resp.Header)
		}
	}
	return resp, err
}

type exchangeKey struct{}

// exchange is what the transport saw of one call's answer.
type exchange struct {
	mu     sync.Mutex
	status int
	header http.Header
}

func (x *exchange) set(status int, h http.Header) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.status, x.header = status, h
}

func (x *exchange) get() (int, http.Header) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.status, x.header
}

// record returns a context whose calls report their answer to the
// returned exchange.
func record(ctx context.Context) (context.Context, *exchange) {
	x := &exchange{}
	return context.WithValue(ctx, exchangeKey{}, x), x
}

// providerClock is what the answers so far showed of the provider's clock.
func (t *transport) providerClock() floodgate.ProviderClock {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.clock
}
