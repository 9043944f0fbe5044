package loadgen

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// outcome is one HTTP request's fate.
type outcome struct {
	// step names the request's part of a journey ("" for plain load).
	step string
	// code is the HTTP status; 0 means no answer (errText says why).
	code    int
	errText string
	// body is read for answers outside 2xx, to count problem types.
	body     []byte
	replayed bool
	// latency runs from the moment the request was due to the end of
	// the answer; service from the moment it was actually sent.
	latency, service time.Duration
}

// collector accounts for every request. Vegeta's result loop and every
// journey write to it; the progress line reads it.
type collector struct {
	mu       sync.Mutex
	sent     uint64
	ok       uint64
	accepted uint64 // 202s
	replayed uint64
	non2xx   uint64
	netErr   uint64
	// limited counts 429s of problem type rate_limited: the server's
	// card-testing limits, as opposed to any other 429.
	limited  uint64
	byStatus map[int]uint64
	byType   map[string]uint64
	netKinds map[string]uint64
	latency  Histogram
	service  Histogram
	steps    map[string]*Histogram
}

func newCollector() *collector {
	return &collector{byStatus: map[int]uint64{}, byType: map[string]uint64{}, netKinds: map[string]uint64{},
		steps: map[string]*Histogram{}}
}

func (c *collector) record(o outcome) {
	var ptype string
	if o.code >= 400 {
		ptype = problemType(o.body)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent++
	c.latency.Record(o.latency)
	c.service.Record(o.service)
	if o.step != "" {
		h := c.steps[o.step]
		if h == nil {
			h = &Histogram{}
			c.steps[o.step] = h
		}
		h.Record(o.latency)
	}
	switch {
	case o.code == 0:
		c.netErr++
		c.netKinds[netKind(o.errText)]++
		return
	case o.code >= 200 && o.code < 300:
		c.ok++
		if o.code == 202 {
			c.accepted++
		}
		if o.replayed {
			c.replayed++
		}
	default:
		c.non2xx++
	}
	if o.code < 200 || o.code >= 300 {
		c.byStatus[o.code]++
	}
	if ptype != "" {
		c.byType[ptype]++
	}
	if o.code == 429 && ptype == rateLimitedType {
		c.limited++
	}
}

// snapshot is what the progress line shows.
type snapshot struct {
	sent, errors uint64
	p99          time.Duration
}

func (c *collector) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return snapshot{sent: c.sent, errors: c.non2xx + c.netErr, p99: c.latency.Quantile(0.99)}
}

// requests builds the report's request section.
func (c *collector) requests() Requests {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := Requests{Sent: c.sent, OK: c.ok, Accepted: c.accepted, Replayed: c.replayed, Non2xx: c.non2xx,
		NetworkErrors: c.netErr, ByStatus: map[string]uint64{}, ByType: map[string]uint64{},
		NetworkErrorKinds: map[string]uint64{}, Latency: c.latency.Dist(), ServiceTime: c.service.Dist(),
		Status429: c.byStatus[429], Status503: c.byStatus[503], RateLimited: c.limited}
	for code, n := range c.byStatus {
		r.ByStatus[strconv.Itoa(code)] = n
	}
	for t, n := range c.byType {
		r.ByType[t] = n
	}
	for k, n := range c.netKinds {
		r.NetworkErrorKinds[k] = n
	}
	if c.sent > 0 {
		r.ErrorRate = float64(c.non2xx+c.netErr) / float64(c.sent)
	}
	if len(c.steps) > 0 {
		r.Steps = map[string]Dist{}
		for s, h := range c.steps {
			r.Steps[s] = h.Dist()
		}
	}
	// Slow answers under vegeta's measure and ours, for the comparison
	// the report prints: how many requests a stall really delayed.
	r.SlowOverMS = ms(slowThreshold)
	r.SlowFromIntended = c.latency.CountAbove(slowThreshold)
	r.SlowFromSent = c.service.CountAbove(slowThreshold)
	return r
}

// slowThreshold is the latency the report counts requests above, under
// both measures, to show how many requests a queue delayed.
const slowThreshold = 500 * time.Millisecond

// noProblemType counts 4xx and 5xx answers whose body is not a
// problem+json object with a type.
const noProblemType = "(no problem type)"

// problemType reads the stable slug of a problem+json body.
func problemType(body []byte) string {
	var p struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(body, &p) != nil || p.Type == "" {
		return noProblemType
	}
	if len(p.Type) > 64 {
		return p.Type[:64]
	}
	return p.Type
}

// netKind groups network errors into a few kinds a reader can act on;
// anything else is kept as the message's last part, bounded.
func netKind(msg string) string {
	switch m := strings.ToLower(msg); {
	case strings.Contains(m, "timeout") || strings.Contains(m, "deadline exceeded"):
		return "timeout"
	case strings.Contains(m, "connection refused"):
		return "connection refused"
	case strings.Contains(m, "connection reset"):
		return "connection reset"
	case strings.Contains(m, "broken pipe"):
		return "broken pipe"
	case strings.Contains(m, "too many open files"):
		return "too many open files"
	case strings.Contains(m, "cannot assign requested address"):
		return "out of local ports"
	case strings.Contains(m, "no such host"):
		return "no such host"
	case strings.HasSuffix(m, "eof"):
		return "connection closed (EOF)"
	case strings.Contains(m, "context canceled"):
		return "canceled"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// errText is an error's text for netKind, with the common system errors
// named the same way whichever layer wrapped them.
func errText(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	}
	return err.Error()
}
