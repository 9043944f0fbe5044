package sandbox

import (
	"encoding/json"
	"net/http"
	"slices"
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

	// piWas and pmWas hold, for each of pis and pms, a copy of the object
	// as it was before the work, or nil for one the work created: what
	// undo puts back when the journal refuses the change. emitted counts
	// the events the work emitted.
	piWas   []*paymentIntent
	pmWas   []*paymentMethod
	emitted int64
}

func (s *Server) newExec(r *http.Request, reqID, key string) *exec {
	return &exec{s: s, now: s.clock.Now(), base: s.baseURL(r), reqID: reqID, idemKey: key}
}

// savePI records that the work is about to change pi, to be journaled.
// Call it before the first change: it keeps pi's state from before the
// work, which undo puts back if the journal refuses the change.
func (x *exec) savePI(pi *paymentIntent) {
	if slices.Contains(x.pis, pi) {
		return
	}
	var was *paymentIntent
	if x.s.journal != nil {
		was = pi.clone()
	}
	x.pis = append(x.pis, pi)
	x.piWas = append(x.piWas, was)
}

// createdPI records a PaymentIntent the work created, to be journaled.
func (x *exec) createdPI(pi *paymentIntent) {
	x.pis = append(x.pis, pi)
	x.piWas = append(x.piWas, nil)
}

// savePM is savePI for a payment method; magic ones are never stored.
func (x *exec) savePM(pm *paymentMethod) {
	if pm.magic || slices.Contains(x.pms, pm) {
		return
	}
	var was *paymentMethod
	if x.s.journal != nil {
		was = pm.clone()
	}
	x.pms = append(x.pms, pm)
	x.pmWas = append(x.pmWas, was)
}

// createdPM records a payment method the work created.
func (x *exec) createdPM(pm *paymentMethod) {
	x.pms = append(x.pms, pm)
	x.pmWas = append(x.pmWas, nil)
}

func (x *exec) saveIdem(e *idemEntry) { x.idems = append(x.idems, e) }

// emit records a Stripe event about obj, rendered now, so that the event
// shows the object as the change left it.
func (x *exec) emit(typ string, obj map[string]any) {
	x.s.stats.Events++
	x.emitted++
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
// When the journal refuses, x's change is undone and its events dropped:
// the caller answers that nothing happened, which is then true in memory
// as in the journal.
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
		s.undo(x)
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

// undo takes back what x changed in memory, after the journal refused it:
// PaymentIntents and payment methods return to their state before x (the
// ones x created are forgotten, with the charges and refunds x indexed),
// x's idempotency keys are released, since nothing of their request
// happened, and x's events are dropped.
func (s *Server) undo(x *exec) {
	for i, pi := range x.pis {
		was := x.piWas[i]
		if ch := pi.Charge; ch != nil && (was == nil || was.Charge == nil || was.Charge.ID != ch.ID) && s.charges[ch.ID] == pi {
			delete(s.charges, ch.ID)
		}
		for _, rf := range pi.Refunds {
			if (was == nil || !slices.ContainsFunc(was.Refunds, func(o *refund) bool { return o.ID == rf.ID })) && s.refunds[rf.ID] == pi {
				delete(s.refunds, rf.ID)
			}
		}
		if was != nil {
			*pi = *was
			continue
		}
		delete(s.pis, pi.ID)
		if k := slices.Index(s.order, pi); k >= 0 {
			s.order = slices.Delete(s.order, k, k+1)
		}
	}
	for i, pm := range x.pms {
		if was := x.pmWas[i]; was != nil {
			*pm = *was
		} else {
			delete(s.pms, pm.ID)
		}
	}
	for _, e := range x.idems {
		s.idem.release(e)
	}
	s.stats.Events -= x.emitted
	x.events = nil
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
