package sandbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"
)

// loggedEvent is one Stripe event the sandbox emitted, kept for
// GET /v1/events. It is also the journal's record of the event.
type loggedEvent struct {
	Seq        int64  `json:"seq"`
	ID         string `json:"id"`
	Type       string `json:"type"`
	Created    int64  `json:"created"`
	APIVersion string `json:"api_version"`
	// RequestID and IdempotencyKey name the API request that caused the
	// event; both are empty for an automatic one.
	RequestID      string `json:"request_id,omitempty"`
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// Object is data.object: the object as the change left it.
	Object json.RawMessage `json:"object"`
	// Webhook is set when the event was sent to the webhook endpoint (one
	// is configured and enabled for its type); Delivered once the
	// endpoint answered 2xx.
	Webhook   bool `json:"webhook,omitempty"`
	Delivered bool `json:"delivered,omitempty"`
}

// valid reports whether a journaled event can be served.
func (ev *loggedEvent) valid() bool {
	return ev.ID != "" && ev.Type != "" && len(ev.Object) > 0 && ev.Object[0] == '{' && json.Valid(ev.Object)
}

// compareEvent orders events by creation; the sequence, then the id, break
// ties, so that the order is total.
func compareEvent(a, b *loggedEvent) int {
	return cmp.Or(cmp.Compare(a.Created, b.Created), cmp.Compare(a.Seq, b.Seq), strings.Compare(a.ID, b.ID))
}

func eventBefore(a, b *loggedEvent) bool { return compareEvent(a, b) < 0 }

// pendingWebhooks is the event's pending_webhooks now: 1 while the
// endpoint it was sent to has not answered 2xx (also after the sandbox gave
// up on it, as Stripe counts a failed endpoint), else 0.
func (ev *loggedEvent) pendingWebhooks() int {
	if ev.Webhook && !ev.Delivered {
		return 1
	}
	return 0
}

// render is the Event object as Stripe shows it, with pending_webhooks
// as given.
func (ev *loggedEvent) render(pending int) map[string]any {
	req := map[string]any{"id": nil, "idempotency_key": nil}
	if ev.RequestID != "" {
		req["id"] = ev.RequestID
		if ev.IdempotencyKey != "" {
			req["idempotency_key"] = ev.IdempotencyKey
		}
	}
	return map[string]any{
		"id":               ev.ID,
		"object":           "event",
		"api_version":      ev.APIVersion,
		"created":          ev.Created,
		"data":             map[string]any{"object": ev.Object},
		"livemode":         false,
		"pending_webhooks": pending,
		"request":          req,
		"type":             ev.Type,
	}
}

// eventLog keeps the latest events, oldest first, at most max of them: past
// the bound the oldest is forgotten (counted in evicted).
type eventLog struct {
	max     int
	list    []*loggedEvent // list[head:] ascending by compareEvent
	head    int
	byID    map[string]*loggedEvent
	evicted int64
}

func newEventLog(max int) *eventLog {
	return &eventLog{max: max, byID: map[string]*loggedEvent{}}
}

// live returns the events kept, oldest first; callers must not change it.
func (l *eventLog) live() []*loggedEvent { return l.list[l.head:] }

func (l *eventLog) len() int { return len(l.list) - l.head }

// add keeps ev, in its place by creation (an event whose id is kept
// already replaces it), and forgets the oldest beyond the bound.
func (l *eventLog) add(ev *loggedEvent) {
	if old := l.byID[ev.ID]; old != nil {
		l.remove(old)
	}
	l.byID[ev.ID] = ev
	live := l.live()
	if n := len(live); n == 0 || eventBefore(live[n-1], ev) {
		l.list = append(l.list, ev)
	} else {
		i := l.head + sort.Search(n, func(i int) bool { return eventBefore(ev, live[i]) })
		l.list = slices.Insert(l.list, i, ev)
	}
	for l.len() > l.max {
		delete(l.byID, l.list[l.head].ID)
		l.list[l.head] = nil
		l.head++
		l.evicted++
	}
	// The consumed front is dropped once it dominates, so that memory
	// stays proportional to the events kept.
	if l.head > 1024 && l.head*2 > len(l.list) {
		n := copy(l.list, l.list[l.head:])
		clear(l.list[n:])
		l.list, l.head = l.list[:n], 0
	}
}

// remove forgets ev, which the log holds.
func (l *eventLog) remove(ev *loggedEvent) {
	live := l.live()
	i := sort.Search(len(live), func(i int) bool { return !eventBefore(live[i], ev) })
	if i < len(live) && live[i] == ev {
		l.list = slices.Delete(l.list, l.head+i, l.head+i+1)
	}
	delete(l.byID, ev.ID)
}

// markDelivered records that the webhook endpoint took the event id (2xx).
// With a journal the fact is written with the next change, or at Close:
// a crash before then forgets it, and the event then lists as not
// delivered, the side a reader of delivery_success=false is safe on.
func (s *Server) markDelivered(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events.byID[id]
	if ev == nil || ev.Delivered {
		return
	}
	ev.Delivered = true
	if s.journal != nil {
		s.delivered = append(s.delivered, id)
	}
}

// matchType reports whether an event type matches pattern, in which each *
// stands for any run of characters ("payment_intent.*", "*").
func matchType(pattern, typ string) bool {
	// The classic greedy wildcard match: on a mismatch, the last * takes
	// one more character.
	p, t, star, mark := 0, 0, -1, 0
	for t < len(typ) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, t
			p++
		case p < len(pattern) && pattern[p] == typ[t]:
			p++
			t++
		case star >= 0:
			p, mark = star+1, mark+1
			t = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// maxEventTypes is Stripe's bound on types[].
const maxEventTypes = 20

// eventRetention is how far back Stripe lists and retrieves events.
const eventRetention = 30 * 24 * time.Hour

// event returns the event id if it is kept and not older than
// eventRetention at now.
func (l *eventLog) event(id string, now time.Time) *loggedEvent {
	if ev := l.byID[id]; ev != nil && ev.Created >= now.Add(-eventRetention).Unix() {
		return ev
	}
	return nil
}

func listEvents(f *form, _ string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("created", "delivery_success", "ending_before", "expand", "limit", "starting_after", "type", "types"); e != nil {
		return nil, e
	}
	q, e := parseListQuery(f)
	if e != nil {
		return nil, e
	}
	pattern, hasType, e := f.scalar("type")
	if e != nil {
		return nil, e
	}
	types, hasTypes, e := f.list("types")
	if e != nil {
		return nil, e
	}
	if hasType && hasTypes {
		return nil, errExclusive("types", "type", "types")
	}
	if len(types) > maxEventTypes {
		return nil, errInvalid("types", "", fmt.Sprintf("You may pass at most %d types, but you passed %d.", maxEventTypes, len(types)))
	}
	delivery := ""
	if v, ok, e := f.scalar("delivery_success"); e != nil {
		return nil, e
	} else if ok {
		if _, e := parseBool("delivery_success", v); e != nil {
			return nil, e
		}
		delivery = v
	}
	if list, _, e := f.list("expand"); e != nil {
		return nil, e
	} else if len(list) > 0 {
		return nil, errInvalid("expand", "", fmt.Sprintf("This property cannot be expanded (%s).", list[0]))
	}
	keep := func(ev *loggedEvent) bool {
		switch {
		case pattern != "" && !matchType(pattern, ev.Type):
			return false
		case hasTypes && !slices.Contains(types, ev.Type):
			return false
		case delivery == "true" && !ev.Delivered, delivery == "false" && ev.Delivered:
			return false
		}
		return true
	}
	return func(x *exec) *response {
		// Stripe lists events of the last 30 days only.
		lo := max(q.lo, x.now.Add(-eventRetention).Unix())
		live := x.s.events.live()
		window := live[sort.Search(len(live), func(i int) bool { return live[i].Created >= lo }):]
		window = window[:sort.Search(len(window), func(i int) bool { return window[i].Created > q.hi })]
		var cursor *loggedEvent
		if q.cursor != "" {
			if cursor = x.s.events.event(q.cursor, x.now); cursor == nil {
				return errorResponse(errNoSuch(http.StatusBadRequest, "event", q.cursor, q.cursorParam()))
			}
		}
		page, more := pageOf(window, q.limit, cursor, q.backward, eventBefore, keep)
		data := make([]any, len(page))
		for i, ev := range page {
			data[i] = ev.render(ev.pendingWebhooks())
		}
		return jsonResponse(http.StatusOK, map[string]any{"object": "list", "data": data, "has_more": more, "url": "/v1/events"})
	}, nil
}

func retrieveEvent(f *form, id string) (func(*exec) *response, *apiError) {
	if e := f.checkNames("expand"); e != nil {
		return nil, e
	}
	return func(x *exec) *response {
		ev := x.s.events.event(id, x.now)
		if ev == nil {
			return errorResponse(errNoSuch(http.StatusNotFound, "event", id, "id"))
		}
		return jsonResponse(http.StatusOK, ev.render(ev.pendingWebhooks()))
	}, nil
}
