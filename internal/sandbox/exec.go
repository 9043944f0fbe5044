package sandbox

import (
	"encoding/json"
	"net/http"
	"time"
)

// exec is the context of one request's work, done under Server.mu: the
// time, where browsers reach the sandbox, and what the work changed (to be
// journaled before the answer) and announced (to be sent as webhooks).
type exec struct {
	s       *Server
	now     time.Time
	base    string
	reqID   string
	idemKey string

	pis    []*paymentIntent
	pms    []*paymentMethod
	idems  []*idemEntry
	events []*event
}

func (s *Server) newExec(r *http.Request, reqID, key string) *exec {
	return &exec{s: s, now: s.clock.Now(), base: s.baseURL(r), reqID: reqID, idemKey: key}
}

func (x *exec) savePI(pi *paymentIntent) {
	for _, p := range x.pis {
		if p == pi {
			return
		}
	}
	x.pis = append(x.pis, pi)
}

func (x *exec) savePM(pm *paymentMethod) {
	if pm.magic {
		return
	}
	for _, p := range x.pms {
		if p == pm {
			return
		}
	}
	x.pms = append(x.pms, pm)
}

func (x *exec) saveIdem(e *idemEntry) { x.idems = append(x.idems, e) }

// emit records a Stripe event about obj, rendered now, so that the event
// shows the object as the change left it.
func (x *exec) emit(typ string, obj map[string]any) {
	x.s.stats.Events++
	if x.s.hooks == nil {
		return
	}
	var req map[string]any
	if x.reqID != "" {
		req = map[string]any{"id": x.reqID, "idempotency_key": nil}
		if x.idemKey != "" {
			req["idempotency_key"] = x.idemKey
		}
	}
	id := newID("evt_", 24)
	body, err := json.Marshal(map[string]any{
		"id":               id,
		"object":           "event",
		"api_version":      x.s.hooks.version,
		"created":          x.now.Unix(),
		"data":             map[string]any{"object": obj},
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          req,
		"type":             typ,
	})
	if err != nil {
		x.s.log.Error("sandbox could not render an event", "type", typ, "err", err)
		return
	}
	x.events = append(x.events, &event{id: id, typ: typ, payload: body})
}

// commit journals what x changed and fsyncs, before the answer is written.
func (s *Server) commit(x *exec) error {
	if s.journal == nil {
		return nil
	}
	var recs []record
	for _, pi := range x.pis {
		recs = append(recs, record{Kind: "pi", PI: pi})
	}
	for _, pm := range x.pms {
		recs = append(recs, record{Kind: "pm", PM: pm})
	}
	for _, e := range x.idems {
		recs = append(recs, record{Kind: "idem", Idem: e})
	}
	if len(recs) == 0 {
		return nil
	}
	if err := s.journal.append(recs); err != nil {
		return err
	}
	if s.journal.needsCompaction(len(s.pis) + len(s.pms) + len(s.idem.m)) {
		if err := s.journal.compact(s.snapshot()); err != nil {
			// The journal is still complete, only longer: log and go on.
			s.log.Error("sandbox journal compaction failed", "err", err)
		}
	}
	return nil
}

// publish hands x's events to the webhook sender.
func (s *Server) publish(x *exec) {
	if s.hooks == nil {
		return
	}
	for _, ev := range x.events {
		s.hooks.enqueue(ev, s.cfg.WebhookDuplicateRate > 0 && s.rng.Float64() < s.cfg.WebhookDuplicateRate)
	}
}
