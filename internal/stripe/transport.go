package stripe

import (
	"context"
	"net/http"
	"sync"
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
type transport struct {
	base http.RoundTripper
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.GetBody = nil
	resp, err := t.base.RoundTrip(r2)
	if resp != nil {
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
