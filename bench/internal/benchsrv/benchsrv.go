// Package benchsrv is what the comparison servers share with each other
// and with floodgate, so that the load generator treats them alike: the
// demo campaign's description, and /metrics with the process's CPU and
// memory and a count of accepted donations.
package benchsrv

import (
	"io"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server is an HTTP server with the routes the load generator reads.
type Server struct {
	mux      *http.ServeMux
	accepted prometheus.Counter
}

// New returns a Server with GET /v1/campaigns/demo and GET /metrics.
func New() *Server {
	reg := prometheus.NewRegistry()
	accepted := prometheus.NewCounter(prometheus.CounterOpts{Name: "floodgate_donations_accepted_total",
		Help: "Donations answered 202."})
	// These servers never replay a key: the series exists, at zero, so that
	// the load generator reads them as it reads floodgate.
	replayed := prometheus.NewCounter(prometheus.CounterOpts{Name: "floodgate_donations_replayed_total",
		Help: "Requests answered from an existing idempotency key (always 0 here)."})
	reg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector(), accepted, replayed)
	s := &Server{mux: http.NewServeMux(), accepted: accepted}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /v1/campaigns/demo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"demo","name":"Demo","currency":"eur","min_amount":500,"max_amount":1000000,`+
			`"suggested_amounts":[1000,2500,5000,10000],"state":"open"}`+"\n")
	})
	return s
}

// HandleDonation serves POST /v1/campaigns/{id}/donations with h.
func (s *Server) HandleDonation(h http.HandlerFunc) {
	s.mux.HandleFunc("POST /v1/campaigns/{id}/donations", h)
}

// Accepted counts one donation answered 202.
func (s *Server) Accepted() { s.accepted.Inc() }

// ListenAndServe serves on addr.
func (s *Server) ListenAndServe(addr string) error {
	return (&http.Server{Addr: addr, Handler: s.mux}).ListenAndServe()
}
