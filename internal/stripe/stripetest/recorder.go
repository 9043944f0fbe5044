package stripetest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// Exchange is one HTTP exchange as the wire saw it.
type Exchange struct {
	Method string
	Path   string
	Query  string
	Body   string
	// Status is 0 when no answer came (Err says why).
	Status int
	Header http.Header
	Answer string
	Err    error
}

func (x Exchange) String() string {
	s := x.Method + " " + x.Path
	if x.Query != "" {
		s += "?" + x.Query
	}
	if x.Body != "" {
		s += " body " + x.Body
	}
	if x.Err != nil {
		return s + ": " + x.Err.Error()
	}
	return fmt.Sprintf("%s: %d %s", s, x.Status, strings.TrimSpace(x.Answer))
}

// Recorder is an http.RoundTripper that keeps every exchange made through
// it, so that a test can say what was sent and what came back, headers
// included (floodgate.Payment carries none). Put it under the adapter as
// the transport of Options.HTTPClient.
type Recorder struct {
	// Base sends the requests; nil is http.DefaultTransport.
	Base http.RoundTripper

	mu   sync.Mutex
	seen []Exchange
}

// RoundTrip implements http.RoundTripper.
func (rec *Recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	x := Exchange{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery}
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		x.Body = string(b)
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	base := rec.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err != nil {
		x.Err = err
		rec.add(x)
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	x.Status, x.Header, x.Answer = resp.StatusCode, resp.Header.Clone(), string(b)
	if err != nil {
		x.Err = err
	}
	rec.add(x)
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp, nil
}

func (rec *Recorder) add(x Exchange) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.seen = append(rec.seen, x)
}

// Last returns the latest exchange, or the zero Exchange before the first.
func (rec *Recorder) Last() Exchange {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) == 0 {
		return Exchange{}
	}
	return rec.seen[len(rec.seen)-1]
}

// Count is how many exchanges were made so far.
func (rec *Recorder) Count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.seen)
}
