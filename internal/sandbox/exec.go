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
	events []*loggedEvent

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
// shows the object as the change left it. The event is logged for
// GET /v1/events once the change is journaled (commit), and sent to the
// webhook endpoint if it is enabled for the type (publish): the log and
// the delivery carry the same event.
func (x *exec) emit(typ string, obj map[string]any) {
	s := x.s
	s.stats.Events++
	x.emitted++
	body, err := json.Marshal(obj)
	if err != nil {
		s.log.Error("sandbox could not render an event", "type", typ, "err", err)
		return
	}
	s.eventSeq++
	ev := &loggedEvent{Seq: s.eventSeq, ID: newID("evt_", 24), Type: typ, Created: x.now.Unix(), APIVersion: s.apiVersion,
		Object: body, Webhook: s.hooks != nil && s.webhookWants(typ)}
	if x.reqID != "" {
		ev.RequestID, ev.IdempotencyKey = x.reqID, x.idemKey
	}
	if ev.Webhook {
		s.stats.WebhookEvents++
	}
	x.events = append(x.events, ev)
}

// webhookWants reports whether the endpoint is enabled for events of typ.
func (s *Server) webhookWants(typ string) bool {
	for _, p := range s.opts.WebhookEvents {
		if matchType(p, typ) {
			return true
		}
	}
	return false
}

// commit journals what x changed and fsyncs, before the answer is written,
// then logs x's events. When the journal refuses, x's change is undone and
// its events dropped: the caller answers that nothing happened, which is
// then true in memory as in the journal. The journal also takes, in the
// same write, the webhook deliveries that succeeded since the last one.
func (s *Server) commit(x *exec) error {
	wrote := false
	if s.journal != nil {
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
		for _, ev := range x.events {
			recs = append(recs, record{Kind: "evt", Evt: ev})
		}
		for _, id := range s.delivered {
			recs = append(recs, record{Kind: "dlv", Dlv: id})
		}
		if len(recs) > 0 {
			if err := s.journal.append(recs); err != nil {
				s.undo(x)
				return err
			}
			s.delivered, wrote = nil, true
		}
	}
	for _, ev := range x.events {
		s.events.add(ev)
	}
	if wrote && s.journal.needsCompaction(s.live()) {
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

// publish hands x's events to the webhook sender, those the endpoint is
// enabled for.
func (s *Server) publish(x *exec) {
	if s.hooks == nil {
		return
	}
	for _, ev := range x.events {
		if !ev.Webhook {
			continue
		}
		payload, err := json.Marshal(ev.render(1))
		if err != nil {
			s.log.Error("sandbox could not render an event", "event", ev.ID, "type", ev.Type, "err", err)
			continue
		}
		s.hooks.enqueue(&event{id: ev.ID, typ: ev.Type, payload: payload},
			s.cfg.WebhookDuplicateRate > 0 && s.rng.Float64() < s.cfg.WebhookDuplicateRate)
	}
}
