// Package metrics defines every Prometheus series floodgate exports, in
// one place, so that names and labels stay consistent and each series is
// registered once per process (or once per test server).
package metrics

import (
	"net/http"

	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the collectors. A nil *Metrics is not valid; use New.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPDuration *prometheus.HistogramVec // route, method, code

	Accepted  prometheus.Counter
	Replayed  prometheus.Counter
	Shed      *prometheus.CounterVec // reason
	BatchSize prometheus.Histogram
	BatchTook prometheus.Histogram
	BatchFail prometheus.Counter

	Settled         *prometheus.CounterVec // status
	ProviderCalls   *prometheus.CounterVec // op, outcome
	ProviderLatency *prometheus.HistogramVec
	RateLimited     *prometheus.CounterVec // reason
	Retries         *prometheus.CounterVec // class
	SendRate        prometheus.Gauge
	AllowedRate     prometheus.Gauge
	Dispatching     prometheus.Gauge

	Unknown       prometheus.Gauge
	UnknownAge    prometheus.Gauge
	Lookups       *prometheus.CounterVec // kind: list_page, retrieve
	Sweeps        *prometheus.CounterVec // outcome: complete, incomplete
	SweepResolved *prometheus.CounterVec // outcome: found, absent
	Incidents     *prometheus.CounterVec // kind

	SSESubscribers prometheus.Gauge
	SSEDropped     prometheus.Counter

	Blocked *prometheus.CounterVec // reason: address, email, fingerprint

	WebhookEvents   *prometheus.CounterVec // type, outcome
	WebhookFailures *prometheus.CounterVec // reason

	ConnsRefused    *prometheus.CounterVec // reason: max_conns, per_client
	ConnsClosedIdle prometheus.Counter
}

// Handler serves the metrics as Prometheus text.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// New creates the collectors on a fresh registry, with the Go runtime and
// process collectors (CPU seconds and resident memory come from there).
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := factory{reg}
	m := &Metrics{
		Registry: reg,
		HTTPDuration: f.histVec("floodgate_http_request_duration_seconds", "Time to answer an HTTP request, by route.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}, "route", "method", "code"),
		Accepted: f.counter("floodgate_donations_accepted_total", "Donations made durable and answered 202."),
		Replayed: f.counter("floodgate_donations_replayed_total", "Requests answered from an existing idempotency key."),
		Shed:     f.counterVec("floodgate_requests_shed_total", "Requests refused before any work, by reason.", "reason"),
		BatchSize: f.hist("floodgate_batch_size", "Donations per group commit.",
			prometheus.ExponentialBuckets(1, 2, 12)),
		BatchTook: f.hist("floodgate_batch_commit_seconds", "Time to commit one batch (fsync included).",
			[]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}),
		BatchFail: f.counter("floodgate_batch_failures_total", "Batches whose commit failed (every request answered 503)."),
		Settled:   f.counterVec("floodgate_donations_settled_total", "Donations moved to a new status by the dispatcher or a webhook.", "status"),
		ProviderCalls: f.counterVec("floodgate_provider_requests_total", "Requests sent to the payment provider, by operation and outcome.",
			"op", "outcome"),
		ProviderLatency: f.histVec("floodgate_provider_request_duration_seconds", "Time the payment provider took to answer.",
			[]float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "op"),
		RateLimited: f.counterVec("floodgate_provider_rate_limited_total", "429 answers from the payment provider, by reason.", "reason"),
		Retries:     f.counterVec("floodgate_dispatch_retries_total", "Provider calls retried, by error class.", "class"),
		SendRate:    f.gauge("floodgate_provider_send_rate", "PaymentIntent requests per second this node sent, averaged over the last seconds."),
		AllowedRate: f.gauge("floodgate_provider_rate_allowed", "PaymentIntent requests per second the dispatcher allows itself now (lowered after a 429)."),
		Dispatching: f.gauge("floodgate_dispatch_in_flight", "Donations claimed by this node's dispatcher and not yet settled."),

		Unknown: f.gauge("floodgate_unknown_outcomes", "Payment orders whose outcome is unknown, waiting for a sweep or a webhook (as the cluster's sweeper last saw them)."),
		UnknownAge: f.gauge("floodgate_unknown_outcome_age_seconds",
			"Age of the oldest unknown outcome, from the start of its window on the provider's clock (0 when there is none)."),
		Lookups: f.counterVec("floodgate_lookup_requests_total",
			"Provider requests spent establishing unknown outcomes, by kind (list_page: one page of a sweep; retrieve: one PaymentIntent by id).", "kind"),
		Sweeps: f.counterVec("floodgate_sweeps_total", "Sweeps over the provider's PaymentIntents, by outcome (complete: every page read; incomplete: a page failed, nothing proven absent).", "outcome"),
		SweepResolved: f.counterVec("floodgate_sweep_resolved_total",
			"Unknown outcomes resolved by sweeps, by outcome (found: a PaymentIntent was found; absent: two complete sweeps found none, a new key follows).", "outcome"),
		Incidents: f.counterVec("floodgate_incidents_total",
			"Payments that contradict floodgate's records, by kind (foreign_payment: a PaymentIntent names an order it does not belong to; second_payment: two PaymentIntents for one order; second_success: two succeeded; stray_status: a status floodgate never asks for). Each is logged as an incident.", "kind"),

		SSESubscribers: f.gauge("floodgate_sse_subscribers", "Open live-totals streams."),
		SSEDropped:     f.counter("floodgate_sse_dropped_total", "Live-totals streams closed because the client was too slow."),

		Blocked: f.counterVec("floodgate_abuse_blocked_total",
			"Donation attempts refused by the card-testing defence, by reason (address: a suspect address past its allowance, 429 before queueing or a queued gift failed unsent; email: 429 before queueing; fingerprint: a blocked card, never charged).", "reason"),

		WebhookEvents: f.counterVec("floodgate_webhook_events_total", "Verified provider events, by type and whether they changed a donation.",
			"type", "outcome"),
		WebhookFailures: f.counterVec("floodgate_webhook_failures_total",
			"Provider events refused or failed, by reason (api_version is an alert: events are not being applied; busy: refused unread while too many were being received, the provider delivers them again).", "reason"),

		ConnsRefused: f.counterVec("floodgate_http_connections_refused_total",
			"Connections answered 503 and closed on arrival, by reason (max_conns: none idle to make room; per_client: the client's own cap).", "reason"),
		ConnsClosedIdle: f.counter("floodgate_http_idle_connections_closed_total",
			"Idle connections closed to make room for new ones while connections ran short."),
	}
	// Series that alerts and dashboards watch exist from the first scrape,
	// at zero, rather than appearing only after the first event.
	for _, reason := range []string{"global-rate", "endpoint-rate", "global-concurrency", "endpoint-concurrency", "lock_timeout", "unspecified"} {
		m.RateLimited.WithLabelValues(reason)
	}
	for _, reason := range []string{"signature", "timestamp", "api_version", "decode", "apply", "too_large", "busy", "read"} {
		m.WebhookFailures.WithLabelValues(reason)
	}
	for _, reason := range []string{"address", "email", "fingerprint"} {
		m.Blocked.WithLabelValues(reason)
	}
	for _, reason := range []string{"ingest_queue_full", "sse_subscribers"} {
		m.Shed.WithLabelValues(reason)
	}
	for _, outcome := range []string{"complete", "incomplete"} {
		m.Sweeps.WithLabelValues(outcome)
	}
	for _, outcome := range []string{"found", "absent"} {
		m.SweepResolved.WithLabelValues(outcome)
	}
	for _, kind := range []string{"list_page", "retrieve"} {
		m.Lookups.WithLabelValues(kind)
	}
	for _, kind := range []string{"foreign_payment", "second_payment", "second_success", "stray_status"} {
		m.Incidents.WithLabelValues(kind)
	}
	for _, reason := range []string{"max_conns", "per_client"} {
		m.ConnsRefused.WithLabelValues(reason)
	}
	return m
}

// GaugeFunc registers a gauge read when scraped.
func (m *Metrics) GaugeFunc(name, help string, fn func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn))
}

// Batch implements ingest.BatchObserver.
func (m *Metrics) Batch(size int, took time.Duration, err error) {
	if err != nil {
		m.BatchFail.Inc()
		return
	}
	m.BatchSize.Observe(float64(size))
	m.BatchTook.Observe(took.Seconds())
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) hist(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
