package loadgen

import (
	"context"
	"math"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// lateGrace is how long after the arrival window closes a hit that fell
// due inside it may still be sent. Vegeta stops at the window's end, and
// the last hits are due at its very end: without a grace, scheduling
// noise of a few microseconds would count them as dropped. A hit still
// waiting for a worker this long after the end is dropped; one sent within
// the grace carries its lateness in its latency.
const lateGrace = 250 * time.Millisecond

// maxBody bounds how much of an answer is kept: enough for any
// problem+json body, never a whole unexpected page.
const maxBody = 64 << 10

// arrivals is what happened to the shape's arrivals.
type arrivals struct {
	intended, sent uint64
	// window is the arrival window the rates are over: the shape's
	// length, or less when the run was interrupted.
	window      time.Duration
	interrupted bool
}

// finishArrivals counts the arrivals due in the window: the whole shape,
// or, when the run was interrupted, those due until then. sent is what
// started.
func finishArrivals(shape Shape, sent uint64, stoppedAt time.Duration) arrivals {
	if stoppedAt <= 0 || stoppedAt >= shape.Length() {
		return arrivals{intended: shape.Total(), sent: sent, window: shape.Length()}
	}
	due := uint64(math.Floor(shape.Hits(stoppedAt) + hitsEpsilon))
	// A hit due in the very instant of the interrupt may have gone.
	return arrivals{intended: max(due, sent), sent: sent, window: stoppedAt, interrupted: true}
}

// attack sends donations with vegeta at the shape's pace and records every
// result, with its latency measured from the moment it was due.
//
// Vegeta stamps Result.Timestamp when a worker picks a hit up; when all
// MaxWorkers are busy, hits wait for a worker and that wait is not in
// Result.Latency. The hit's Seq says which hit it was, and the shape says
// when that hit was due, so the wait is put back: latency = end of the
// answer - (start + Intended(Seq)). (Seq is taken in the order workers
// pick hits up, which may swap neighbours under contention; that moves a
// due time by one interval at most, and a latency is never taken below the
// hit's own service time.)
func attack(ctx context.Context, o Options, base string, d *donors, col *collector, started func(time.Time)) arrivals {
	target := base + "/v1/campaigns/" + url.PathEscape(o.Campaign) + "/donations"
	tr := func(t *vegeta.Target) error {
		key, body := d.next()
		t.Method = http.MethodPost
		t.URL = target
		t.Body = body
		t.Header = http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {key}}
		return nil
	}
	workers := uint64(o.MaxWorkers)
	atk := vegeta.NewAttacker(
		vegeta.Workers(min(workers, vegeta.DefaultWorkers)),
		vegeta.MaxWorkers(workers),
		vegeta.KeepAlive(true),
		vegeta.Connections(o.MaxWorkers),
		vegeta.Timeout(o.Timeout),
		vegeta.Redirects(vegeta.NoFollow),
		vegeta.MaxBody(maxBody),
	)
	var stoppedAt atomic.Int64
	start := time.Now()
	stop := context.AfterFunc(ctx, func() {
		stoppedAt.Store(int64(time.Since(start)))
		atk.Stop()
	})
	defer stop()
	if started != nil {
		started(start)
	}
	var sent uint64
	for res := range atk.Attack(tr, o.Shape, o.Shape.Length()+lateGrace, "floodgate-load") {
		sent++
		due := start.Add(o.Shape.Intended(res.Seq))
		out := outcome{code: int(res.Code), service: res.Latency}
		out.latency = max(res.End().Sub(due), res.Latency)
		if res.Code == 0 {
			out.errText = res.Error
		}
		if res.Code >= 400 {
			out.body = res.Body
		}
		out.replayed = res.Headers.Get("Idempotent-Replayed") == "true"
		col.record(out)
	}
	return finishArrivals(o.Shape, sent, time.Duration(stoppedAt.Load()))
}

// newTransport is the HTTP transport for everything that is not vegeta's
// own: journeys, streams, the campaign read. Keep-alive, as browsers do.
func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// schedule starts fn for each of the shape's arrivals at its due time,
// at most slots at once: an arrival that finds every slot taken waits for
// one (and its latency, measured from its due time, shows the wait); an
// arrival that cannot start before the window closes never starts and
// counts as dropped. It returns once every started fn has returned.
func schedule(ctx context.Context, shape Shape, slots int, started func(time.Time), fn func(n uint64, due time.Time)) arrivals {
	start := time.Now()
	if started != nil {
		started(start)
	}
	end := start.Add(shape.Length() + lateGrace)
	sem := make(chan struct{}, slots)
	var wg sync.WaitGroup
	var sent uint64
	var stoppedAt time.Duration
	timer := time.NewTimer(0)
	defer timer.Stop()
	total := shape.Total()
loop:
	for n := uint64(0); n < total; n++ {
		due := start.Add(shape.Intended(n))
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				stoppedAt = time.Since(start)
				break loop
			}
		}
		select {
		case sem <- struct{}{}:
		default:
			left := time.Until(end)
			if left <= 0 {
				break loop
			}
			timer.Reset(left)
			select {
			case sem <- struct{}{}:
			case <-timer.C:
				break loop
			case <-ctx.Done():
				stoppedAt = time.Since(start)
				break loop
			}
		}
		sent++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(n, due)
		}()
	}
	wg.Wait()
	return finishArrivals(shape, sent, stoppedAt)
}
