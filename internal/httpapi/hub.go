package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/metrics"
	"github.com/floodgate/floodgate/internal/startstop"
)

// HubOptions bound a Hub.
type HubOptions struct {
	// Interval is how often totals are read for campaigns that have
	// subscribers; changes are pushed at most this often (coalescing).
	Interval time.Duration
	// MaxSubscribers bounds open streams on this node.
	MaxSubscribers int
	Metrics        *metrics.Metrics
	Logger         *slog.Logger
	// Clock times the interval (nil: the system clock).
	Clock floodgate.Clock
}

// Totals is what the hub reads: a campaign's totals (floodgate.Campaigns
// has it).
type Totals interface {
	Totals(ctx context.Context, campaignID string) (*floodgate.Totals, error)
}

// Hub fans live totals out to SSE subscribers. It reads each watched
// campaign's totals from the store once per interval, whatever the number
// of subscribers, so totals changed by any node reach every node's
// subscribers, and a burst of settlements becomes one event. It reads
// between Start and Stop; the streams end when it stops.
type Hub struct {
	startstop.Base
	store Totals
	opts  HubOptions
	log   *slog.Logger

	mu    sync.Mutex
	subs  map[string]map[*subscriber]struct{}
	last  map[string][]byte // the latest event payload per campaign
	count atomic.Int64
	poke  chan struct{}
}

var _ startstop.Service = (*Hub)(nil)

// subscriber receives the latest totals payload; older ones it did not
// read yet are replaced, so a slow reader never holds the hub.
type subscriber struct {
	campaign string
	ch       chan []byte
}

// NewHub returns a Hub; nothing runs until Start.
func NewHub(store Totals, opts HubOptions) *Hub {
	if opts.Interval <= 0 {
		opts.Interval = 250 * time.Millisecond
	}
	if opts.MaxSubscribers <= 0 {
		opts.MaxSubscribers = 10000
	}
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	return &Hub{store: store, opts: opts, log: logger(opts.Logger),
		subs: map[string]map[*subscriber]struct{}{}, last: map[string][]byte{}, poke: make(chan struct{}, 1)}
}

// Start reads and pushes totals until Stop.
func (h *Hub) Start(ctx context.Context) error {
	if _, ok := h.StartInit(ctx); !ok {
		return nil
	}
	h.Go(h.run)
	return h.StartDone(nil)
}

// Stop ends the reads and every open stream (the server is shutting down;
// browsers reconnect elsewhere). It is safe to call twice.
func (h *Hub) Stop() { h.Base.Stop() }

// Subscribers is the number of open streams.
func (h *Hub) Subscribers() int64 { return h.count.Load() }

// Notify asks the hub to look at the totals soon (a local settlement);
// it never blocks.
func (h *Hub) Notify() {
	select {
	case h.poke <- struct{}{}:
	default:
	}
}

func (h *Hub) subscribe(campaign string) (*subscriber, error) {
	if h.count.Add(1) > int64(h.opts.MaxSubscribers) {
		h.count.Add(-1)
		return nil, &floodgate.Error{Code: floodgate.EOVERLOADED, Message: "Too many live streams are open on this server.", RetryAfter: 5 * time.Second}
	}
	s := &subscriber{campaign: campaign, ch: make(chan []byte, 1)}
	h.mu.Lock()
	set := h.subs[campaign]
	if set == nil {
		set = map[*subscriber]struct{}{}
		h.subs[campaign] = set
	}
	set[s] = struct{}{}
	h.mu.Unlock()
	if h.opts.Metrics != nil {
		h.opts.Metrics.SSESubscribers.Set(float64(h.count.Load()))
	}
	return s, nil
}

func (h *Hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	if set := h.subs[s.campaign]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.subs, s.campaign)
			delete(h.last, s.campaign)
		}
	}
	h.mu.Unlock()
	h.count.Add(-1)
	if h.opts.Metrics != nil {
		h.opts.Metrics.SSESubscribers.Set(float64(h.count.Load()))
	}
}

// run reads and pushes totals until ctx ends: on every interval, and on a
// poke when the last read is at least an interval old.
func (h *Hub) run(ctx context.Context) {
	clock := h.opts.Clock
	t := clock.NewTimer(h.opts.Interval)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			t.Reset(h.opts.Interval)
		case <-h.poke:
			if clock.Now().Sub(last) < h.opts.Interval {
				continue
			}
		}
		last = clock.Now()
		h.tick(ctx)
	}
}

func (h *Hub) tick(ctx context.Context) {
	h.mu.Lock()
	campaigns := make([]string, 0, len(h.subs))
	for c := range h.subs {
		campaigns = append(campaigns, c)
	}
	h.mu.Unlock()
	for _, c := range campaigns {
		t, err := h.store.Totals(ctx, c)
		if err != nil {
			if ctx.Err() == nil {
				h.log.Warn("live totals: read failed", "campaign", c, "err", err)
			}
			continue
		}
		payload, _ := json.Marshal(totalsJSON(t)) // plain struct: cannot fail
		h.mu.Lock()
		if string(h.last[c]) != string(payload) {
			h.last[c] = payload
			for s := range h.subs[c] {
				offer(s.ch, payload)
			}
		}
		h.mu.Unlock()
	}
}

// offer puts payload in ch, replacing an unread older one.
func offer(ch chan []byte, payload []byte) {
	for {
		select {
		case ch <- payload:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// streamLifetime bounds one stream; the browser's EventSource reconnects
// by itself, which spreads long-lived connections across nodes over time.
const streamLifetime = 30 * time.Minute

// writeTimeout is how long one event may take to write before the
// subscriber is judged too slow and dropped.
const writeTimeout = 10 * time.Second

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.totals(r.Context(), id); err != nil {
		return err // 404 before a subscription is taken
	}
	sub, err := s.Hub.subscribe(id)
	if err != nil {
		if s.Metrics != nil {
			s.Metrics.Shed.WithLabelValues("sse_subscribers").Inc()
		}
		return err
	}
	defer s.Hub.unsubscribe(sub)
	// Read the totals for the first event only once subscribed: a change
	// that lands in between then reaches this subscriber one way or the
	// other, never neither.
	t, err := s.totals(r.Context(), id)
	if err != nil {
		return err
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)

	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	first, _ := json.Marshal(totalsJSON(t))
	if !write(sseEvent("retry: 3000\n", first)) {
		return nil
	}
	heartbeat := s.Clock.NewTimer(s.SSEHeartbeat)
	defer heartbeat.Stop()
	end := s.Clock.NewTimer(streamLifetime)
	defer end.Stop()
	hubStopped := s.Hub.Stopped()
	last := first
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-end.C():
			return nil
		case <-hubStopped:
			return nil
		case p := <-sub.ch:
			if string(p) == string(last) {
				continue
			}
			last = p
			if !write(sseEvent("", p)) {
				s.dropped(r, errors.New("write failed"))
				return nil
			}
		case <-heartbeat.C():
			heartbeat.Reset(s.SSEHeartbeat)
			if !write([]byte(": heartbeat\n\n")) {
				s.dropped(r, errors.New("heartbeat failed"))
				return nil
			}
		}
	}
}

func (s *Server) dropped(r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left on its own
	}
	if s.Metrics != nil {
		s.Metrics.SSEDropped.Inc()
	}
	s.log.Debug("live stream dropped", "remote", r.RemoteAddr, "err", err)
}

func sseEvent(prefix string, payload []byte) []byte {
	b := make([]byte, 0, len(prefix)+len(payload)+32)
	b = append(b, prefix...)
	b = append(b, "event: totals\ndata: "...)
	b = append(b, payload...)
	return append(b, "\n\n"...)
}
