package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The series the report reads from the server's /metrics.
const (
	metricCPU      = "process_cpu_seconds_total"
	metricRSS      = "process_resident_memory_bytes"
	metricAccepted = "floodgate_donations_accepted_total"
	metricReplayed = "floodgate_donations_replayed_total"
)

// serverSample is one reading of the server's /metrics.
type serverSample struct {
	cpu, rss, accepted, replayed float64
}

// scrapeTimeout bounds one /metrics read, so a server too busy to answer
// it delays the report by seconds at most.
const scrapeTimeout = 5 * time.Second

// scrape reads the server's /metrics. A server that is not floodgate (no
// accepted counter) or runs without the process collector is an error:
// its cost cannot be measured.
func scrape(ctx context.Context, hc *http.Client, metricsURL string) (serverSample, error) {
	ctx, cancel := context.WithTimeout(ctx, scrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return serverSample{}, err
	}
	// The plain text format, whatever else the server could offer.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return serverSample{}, fmt.Errorf("GET %s: %s", metricsURL, netKind(errText(err)))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return serverSample{}, fmt.Errorf("GET %s answered %d", metricsURL, resp.StatusCode)
	}
	return parseMetrics(io.LimitReader(resp.Body, 32<<20))
}

// parseMetrics reads the Prometheus text format.
func parseMetrics(r io.Reader) (serverSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return serverSample{}, fmt.Errorf("/metrics is not Prometheus text: %v", err)
	}
	var s serverSample
	for _, want := range []struct {
		name string
		v    *float64
	}{{metricCPU, &s.cpu}, {metricRSS, &s.rss}, {metricAccepted, &s.accepted}, {metricReplayed, &s.replayed}} {
		mf, ok := fams[want.name]
		if !ok {
			return serverSample{}, fmt.Errorf("/metrics has no %s (not a floodgate server?)", want.name)
		}
		*want.v = sum(mf)
	}
	return s, nil
}

// sum adds a family's series (the ones read here have a single series).
func sum(mf *dto.MetricFamily) float64 {
	var v float64
	for _, m := range mf.GetMetric() {
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		}
	}
	return v
}

// rssSampler reads the server's resident memory once a second while the
// load runs, to find its peak.
type rssSampler struct {
	mu      sync.Mutex
	peak    float64
	samples int
	stop    context.CancelFunc
	done    chan struct{}
}

func sampleRSS(ctx context.Context, hc *http.Client, metricsURL string, first serverSample) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{peak: first.rss, samples: 1, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if v, err := scrape(ctx, hc, metricsURL); err == nil {
				s.add(v)
			}
		}
	}()
	return s
}

func (s *rssSampler) add(v serverSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.peak = math.Max(s.peak, v.rss)
	s.samples++
}

// finish stops the sampler and folds in the last reading.
func (s *rssSampler) finish(last serverSample) (peak float64, samples int) {
	s.stop()
	<-s.done
	s.add(last)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.samples
}

func serverReport(before, after serverSample, peak float64, samples int) *Server {
	sv := &Server{
		CPUSeconds:    math.Round(math.Max(after.cpu-before.cpu, 0)*1e6) / 1e6,
		Accepted:      uint64(math.Max(after.accepted-before.accepted, 0)),
		Replayed:      uint64(math.Max(after.replayed-before.replayed, 0)),
		AcceptedAfter: uint64(after.accepted),
		RSSBefore:     uint64(before.rss),
		RSSAfter:      uint64(after.rss),
		PeakRSS:       uint64(peak),
		Samples:       samples,
	}
	if sv.Accepted > 0 {
		sv.CPUMicrosPerAccepted = math.Round(sv.CPUSeconds*1e7/float64(sv.Accepted)) / 10
	}
	return sv
}
