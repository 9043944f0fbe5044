package sandbox

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// maxRetryDelay caps the wait between deliveries of one event.
const maxRetryDelay = time.Hour

// event is one Stripe event waiting for delivery.
type event struct {
	id       string
	typ      string
	payload  []byte
	attempts int
	due      time.Time
}

// webhooks delivers events to Options.WebhookURL from a bounded queue, one
// at a time, signed as Stripe signs them, retrying failures with
// exponential backoff a bounded number of times; its worker runs while the
// Server does (Start, Stop). Deliveries and their backoff run on the wall
// clock, as a provider's do whatever its clients' clocks say; only the
// signature's timestamp comes from Options.Clock, so that tests can make
// it stale.
type webhooks struct {
	s      *Server
	url    string
	secret string
	client *http.Client
	queue  chan *event
	rng    *rand.Rand // the worker's own: shuffling needs no lock

	delivered atomic.Int64
	failed    atomic.Int64 // attempts answered with an error or non-2xx
	dropped   atomic.Int64 // events given up on, or refused by a full queue
	pending   atomic.Int64 // events accepted and not yet delivered or dropped
}

func newWebhooks(s *Server, seed uint64) *webhooks {
	client := s.opts.WebhookClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &webhooks{
		s: s, url: s.opts.WebhookURL, secret: s.opts.WebhookSecret, client: client,
		queue: make(chan *event, s.opts.WebhookQueue),
		rng:   rand.New(rand.NewPCG(seed^0x5bd1e995, seed)),
	}
}

// enqueue accepts ev (twice when dup) without blocking; a full queue drops
// it, counted and logged, rather than stall the API.
func (h *webhooks) enqueue(ev *event, dup bool) {
	n := 1
	if dup {
		n = 2
	}
	for range n {
		select {
		case h.queue <- &event{id: ev.id, typ: ev.typ, payload: ev.payload}:
			h.pending.Add(1)
		default:
			h.dropped.Add(1)
			h.s.log.Warn("sandbox webhook queue full; event dropped", "event", ev.id, "type", ev.typ)
		}
	}
}

// run is the delivery worker, until ctx ends. Events waiting for a retry
// stay in waiting, which holds at most as many events as the queue: while
// it is full the worker stops taking new ones, and the queue's own bound
// applies.
func (h *webhooks) run(ctx context.Context) {
	limit := cap(h.queue)
	var waiting []*event
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		var ready, later []*event
		next := now.Add(time.Hour)
		for _, ev := range waiting {
			if !ev.due.After(now) {
				ready = append(ready, ev)
			} else {
				later = append(later, ev)
				if ev.due.Before(next) {
					next = ev.due
				}
			}
		}
		waiting = later
		if len(ready) == 0 {
			var in chan *event
			if len(waiting) < limit {
				in = h.queue
			}
			timer.Reset(next.Sub(now))
			select {
			case <-ctx.Done():
				return
			case ev := <-in:
				ready = append(ready, ev)
			case <-timer.C:
				continue
			}
		}
		// Take what else is queued, so that shuffling has a batch to mix.
	drain:
		for len(ready)+len(waiting) < limit {
			select {
			case ev := <-h.queue:
				ready = append(ready, ev)
			default:
				break drain
			}
		}
		if h.s.Config().WebhookShuffle {
			h.rng.Shuffle(len(ready), func(i, j int) { ready[i], ready[j] = ready[j], ready[i] })
		}
		for _, ev := range ready {
			if ctx.Err() != nil {
				return
			}
			err := h.deliver(ctx, ev)
			if err == nil {
				// Marked before the counts move, so that whoever sees
				// the counts sees the event delivered.
				h.s.markDelivered(ev.id)
				h.delivered.Add(1)
				h.pending.Add(-1)
				continue
			}
			h.failed.Add(1)
			ev.attempts++
			if ev.attempts >= h.s.opts.WebhookMaxAttempts {
				h.dropped.Add(1)
				h.pending.Add(-1)
				h.s.log.Warn("sandbox webhook given up", "event", ev.id, "type", ev.typ, "attempts", ev.attempts, "err", err)
				continue
			}
			delay := retryDelay(h.s.opts.WebhookRetryBase, ev.attempts)
			ev.due = time.Now().Add(delay)
			waiting = append(waiting, ev)
			h.s.log.Debug("sandbox webhook failed; will retry", "event", ev.id, "in", delay, "err", err)
		}
	}
}

// retryDelay is the wait after the n-th failed delivery (n >= 1): base,
// doubling with every failure, never more than maxRetryDelay.
func retryDelay(base time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// deliver posts ev once, signed with the current time.
func (h *webhooks) deliver(ctx context.Context, ev *event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(ev.payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	req.Header.Set("Stripe-Signature", signature(h.s.clock.Now(), ev.payload, h.secret))
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook endpoint answered %s", resp.Status)
	}
	return nil
}

// signature is Stripe's Stripe-Signature header: t=<unix>,v1=<hex HMAC-SHA256
// of "<unix>.<payload>" keyed with the endpoint's secret>.
func signature(t time.Time, payload []byte, secret string) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(payload)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}
