package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Final statuses: a journey stops polling at these. requires_action is
// not final for the donation, but the donor must act (3-D Secure) and a
// load generator cannot, so the journey ends there, counted apart.
var settledStatus = map[string]bool{"succeeded": true, "failed": true, "canceled": true, "requires_action": true}

// Backoffs the donation page uses when the server is busy and says
// nothing of when to come back (internal/web/static/donate.js).
const (
	submitBackoffFirst = time.Second
	submitBackoffMax   = 30 * time.Second
	pollEvery          = 2 * time.Second // when a waiting donation has no Retry-After
	pollBackoffMax     = 60 * time.Second
)

// journeys runs what a donor's browser does, one journey per arrival:
// load the page, load the campaign (the page's script does), POST the
// donation (again with the same key while the answer is busy: a network
// error, 429, 5xx or idempotency_conflict), then poll the donation with
// the donor token, as often as Retry-After says, until it settles.
type journeys struct {
	o    Options
	base string
	hc   *http.Client
	d    *donors
	col  *collector

	started, settled atomic.Uint64
	mu               sync.Mutex
	outcomes         map[string]uint64
	retries          uint64
	maxPosition      int64
	maxETA           int64
	submitToSettled  Histogram
	arrivalToSettled Histogram
}

func newJourneys(o Options, base string, hc *http.Client, d *donors, col *collector) *journeys {
	return &journeys{o: o, base: base, hc: hc, d: d, col: col, outcomes: map[string]uint64{}}
}

// run starts the journeys at the shape's pace and waits for all of them.
func (j *journeys) run(ctx context.Context, started func(time.Time)) (arrivals, *Journeys) {
	arr := schedule(ctx, j.o.Shape, j.o.MaxWorkers, started, func(n uint64, due time.Time) {
		j.started.Add(1)
		j.end(j.one(ctx, due))
	})
	j.mu.Lock()
	defer j.mu.Unlock()
	return arr, &Journeys{Started: arr.sent, Dropped: arr.intended - min(arr.sent, arr.intended), Outcomes: j.outcomes,
		Settled: j.settled.Load(), SubmitRetries: j.retries, MaxQueuePosition: j.maxPosition, MaxETASeconds: j.maxETA,
		SubmitToSettled:  j.submitToSettled.Dist(),
		ArrivalToSettled: j.arrivalToSettled.Dist()}
}

// result is how one journey ended.
type result struct {
	outcome                  string
	due, submitted, finished time.Time
}

func (j *journeys) end(r result) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.outcomes[r.outcome]++
	if settledStatus[r.outcome] {
		j.settled.Add(1)
		j.submitToSettled.Record(r.finished.Sub(r.submitted))
		j.arrivalToSettled.Record(r.finished.Sub(r.due))
	}
}

func (j *journeys) progress() string {
	return "journeys " + strconv.FormatUint(j.started.Load(), 10) + " started, " +
		strconv.FormatUint(j.settled.Load(), 10) + " settled"
}

// answer is one HTTP exchange of a journey.
type answer struct {
	code   int
	header http.Header
	body   []byte
	err    error
}

// busy is an answer the page retries: no answer, 429, 5xx, or the same
// key still being processed.
func (a answer) busy() bool {
	return a.err != nil || a.code == http.StatusTooManyRequests || a.code >= 500 ||
		(a.code == http.StatusConflict && problemType(a.body) == "idempotency_conflict")
}

// do sends one request of a journey and records it; due is when the
// request should have left (for the first, the donor's arrival).
func (j *journeys) do(ctx context.Context, step, method, path string, body []byte, due time.Time, header ...string) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, j.base+path, rd)
	if err != nil {
		return answer{err: err}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	sent := time.Now()
	resp, err := j.hc.Do(req)
	var a answer
	if err == nil {
		a.code, a.header = resp.StatusCode, resp.Header
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			a.code = 0
		}
	}
	a.err = err
	end := time.Now()
	if ctx.Err() != nil && err != nil {
		return a // the run was interrupted: not the server's doing
	}
	out := outcome{step: step, code: a.code, service: end.Sub(sent), latency: max(end.Sub(due), end.Sub(sent))}
	if err != nil {
		out.errText = errText(err)
	}
	if a.code >= 400 {
		out.body = a.body
	}
	out.replayed = a.header.Get("Idempotent-Replayed") == "true"
	j.col.record(out)
	return a
}

// one runs a journey to its end, at the latest SettleTimeout after the
// first POST.
func (j *journeys) one(ctx context.Context, due time.Time) result {
	r := result{due: due}
	camp := url.PathEscape(j.o.Campaign)
	if a := j.do(ctx, "page", http.MethodGet, "/c/"+camp, nil, due); a.code != http.StatusOK {
		r.outcome = "page_failed"
		return j.interrupted(ctx, r)
	}
	// The page's script loads the campaign, and retries while busy;
	// like a donor, the journey gives up at the settle timeout.
	deadline := time.Now().Add(j.o.SettleTimeout)
	if a := j.retrying(ctx, deadline, func(at time.Time) answer {
		return j.do(ctx, "campaign", http.MethodGet, "/v1/campaigns/"+camp, nil, at)
	}, nil); a.code != http.StatusOK {
		r.outcome = "campaign_failed"
		return j.interrupted(ctx, r)
	}

	key, body := j.d.next()
	r.submitted = time.Now()
	deadline = r.submitted.Add(j.o.SettleTimeout)
	a := j.retrying(ctx, deadline, func(at time.Time) answer {
		return j.do(ctx, "submit", http.MethodPost, "/v1/campaigns/"+camp+"/donations", body, at,
			"Content-Type", "application/json", "Idempotency-Key", key)
	}, &j.retries)
	if a.code != http.StatusAccepted {
		r.outcome = "submit_refused"
		if a.busy() {
			r.outcome = "gave_up_busy"
		}
		return j.interrupted(ctx, r)
	}
	var acc struct {
		ID         string `json:"id"`
		DonorToken string `json:"donor_token"`
	}
	if json.Unmarshal(a.body, &acc) != nil || acc.ID == "" {
		r.outcome = "submit_refused"
		return r
	}

	// Poll at once, then as Retry-After says.
	path := "/v1/donations/" + url.PathEscape(acc.ID)
	var wait time.Duration
	backoff := pollEvery
	for {
		if wait > 0 {
			if time.Now().Add(wait).After(deadline) || !sleep(ctx, wait) {
				r.outcome = "unsettled"
				return j.interrupted(ctx, r)
			}
		}
		a := j.do(ctx, "poll", http.MethodGet, path, nil, time.Now(), "Authorization", "Bearer "+acc.DonorToken)
		switch {
		case a.code == http.StatusOK:
			var d struct {
				Status        string `json:"status"`
				QueuePosition int64  `json:"queue_position"`
				ETASeconds    int64  `json:"eta_seconds"`
			}
			_ = json.Unmarshal(a.body, &d)
			j.mu.Lock()
			j.maxPosition, j.maxETA = max(j.maxPosition, d.QueuePosition), max(j.maxETA, d.ETASeconds)
			j.mu.Unlock()
			if settledStatus[d.Status] {
				r.outcome, r.finished = d.Status, time.Now()
				return r
			}
			wait, backoff = retryAfter(a.header, pollEvery), pollEvery
		case a.busy():
			wait = retryAfter(a.header, backoff)
			backoff = min(2*backoff, pollBackoffMax)
		default:
			r.outcome = "lookup_failed"
			return j.interrupted(ctx, r)
		}
	}
}

// retrying sends until the answer is not busy or the deadline would pass,
// waiting as Retry-After says or with a doubling backoff, as the page
// does. Each retry counts in *retries when it is given.
func (j *journeys) retrying(ctx context.Context, deadline time.Time, send func(due time.Time) answer, retries *uint64) answer {
	backoff := submitBackoffFirst
	due := time.Now()
	for {
		a := send(due)
		if !a.busy() {
			return a
		}
		wait := retryAfter(a.header, backoff)
		backoff = min(2*backoff, submitBackoffMax)
		if time.Now().Add(wait).After(deadline) || !sleep(ctx, wait) {
			return a
		}
		if retries != nil {
			j.mu.Lock()
			*retries++
			j.mu.Unlock()
		}
		due = time.Now()
	}
}

// interrupted relabels a journey cut short by the end of the run.
func (j *journeys) interrupted(ctx context.Context, r result) result {
	if ctx.Err() != nil {
		r.outcome = "interrupted"
	}
	return r
}

// retryAfter reads Retry-After in seconds (or as an HTTP date); def when
// absent or unreadable.
func retryAfter(h http.Header, def time.Duration) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return def
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return def
}

// sleep waits d unless ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
