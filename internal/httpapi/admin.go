package httpapi

import (
	"net/http"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/ingest"
)

// chargingJSON is the charging switch and this node's view of it.
type chargingJSON struct {
	// Paused is the operator's switch, for every node.
	Paused bool `json:"paused"`
	// State is this node's: running, paused or waiting_for_provider
	// (its breaker is open and probing).
	State floodgate.ChargingState `json:"state"`
	// ProbeAt, while waiting for the provider, is the breaker's next
	// probe.
	ProbeAt *time.Time `json:"probe_at,omitempty"`
	// Waiting and OldestSeconds describe the line.
	Waiting       int64   `json:"waiting"`
	OldestSeconds float64 `json:"oldest_seconds"`
}

func (s *Server) chargingView() chargingJSON {
	state, until := s.Line.Charging()
	v := chargingJSON{Paused: state == floodgate.ChargingPaused, State: state}
	if !until.IsZero() {
		u := until.UTC()
		v.ProbeAt = &u
	}
	if b, ok := s.Line.(interface {
		Backlog() (int64, time.Duration)
	}); ok {
		w, age := b.Backlog()
		v.Waiting, v.OldestSeconds = w, age.Seconds()
	}
	return v
}

func (s *Server) getCharging(w http.ResponseWriter, r *http.Request) error {
	if s.Line == nil {
		return floodgate.Errorf(floodgate.ENOTFOUND, "Charging is not run by this server.")
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, s.chargingView())
	return nil
}

type setChargingRequest struct {
	Paused *bool `json:"paused"`
}

// setCharging pauses or resumes charging on every node. Donations are
// still accepted while paused: they wait in line, and donors are told so.
func (s *Server) setCharging(w http.ResponseWriter, r *http.Request) error {
	if s.Control == nil || s.Line == nil {
		return floodgate.Errorf(floodgate.ENOTFOUND, "Charging is not run by this server.")
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	var req setChargingRequest
	if err := ingest.DecodeStrict(body, &req); err != nil {
		return err
	}
	if req.Paused == nil {
		return floodgate.Invalid("paused", "is required (true or false)")
	}
	if err := s.Control.Pause(r.Context(), *req.Paused); err != nil {
		return err
	}
	s.log.Info("charging switched by the operator", "paused", *req.Paused)
	writeJSON(w, http.StatusOK, s.chargingView())
	return nil
}
