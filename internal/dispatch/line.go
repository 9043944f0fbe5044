package dispatch

import (
	"context"
	"math"
	"sync/atomic"
	"time"

	"github.com/floodgate/floodgate"
)

// lineState is what place-in-line answers are computed from: the line's
// head and length, read from the store four times a second, and the
// current send rate (the Link's). Answering a donor costs no store read,
// so a hundred thousand polling browsers cost nothing extra whatever the
// line's length.
type lineState struct {
	head    atomic.Int64
	waiting atomic.Int64
	oldest  atomic.Int64 // Unix nanoseconds

	// The measured send rate: the answered requests of the last
	// measureWindow seconds, one count a second; only the once-a-second
	// loop touches these.
	lastSends int64
	lastAt    time.Time
	counts    [measureWindow]float64 // sends per second, newest at next-1
	spans     [measureWindow]float64 // the seconds each count covers
	next      int
	measured  float64
	busySince time.Time
	// predictRate is the rate waits are predicted from: the measured one
	// once the line has been busy long enough for it to mean something,
	// float64 bits; 0 means the allowed rate.
	predictRate atomic.Uint64
}

// measure updates and returns the measured send rate, sends being the
// PaymentIntent requests answered so far. While the line has been busy
// for measureAfter, waits are predicted from it: it is what the provider
// really takes, slower than allowed when calls are slow or refused. An
// idle dispatcher's measured rate says nothing of how fast it would go, so
// waits are then predicted from the allowed rate.
func (l *lineState) measure(now time.Time, busy bool, sends int64) float64 {
	n := sends
	if !l.lastAt.IsZero() {
		if dt := now.Sub(l.lastAt).Seconds(); dt > 0 {
			l.counts[l.next], l.spans[l.next] = float64(n-l.lastSends), dt
			l.next = (l.next + 1) % measureWindow
			var sent, span float64
			for i := range measureWindow {
				sent, span = sent+l.counts[i], span+l.spans[i]
			}
			l.measured = sent / span
		}
	}
	l.lastSends, l.lastAt = n, now
	switch {
	case !busy:
		l.busySince = time.Time{}
	case l.busySince.IsZero():
		l.busySince = now
	}
	if busy && now.Sub(l.busySince) >= measureAfter && l.measured > 0.1 {
		l.predictRate.Store(math.Float64bits(l.measured))
	} else {
		l.predictRate.Store(0)
	}
	return l.measured
}

// measureWindow is the seconds the measured rate averages over; the line
// must have been busy for as long (measureAfter) before waits are
// predicted from it, so that every second averaged was a busy one.
const (
	measureWindow = 5
	measureAfter  = measureWindow * time.Second
)

// measureLine measures the send rate, once a second. Busy means charging
// with work to do: paused, or waiting for the provider, nothing is sent,
// and that says nothing of the rate.
func (d *Dispatcher) measureLine(ctx context.Context) {
	state, _ := d.Charging()
	busy := (d.line.waiting.Load() > 0 || d.inFlight.Load() > 0) && state == floodgate.ChargingRunning
	measured := d.line.measure(d.opts.Clock.Now(), busy, d.link.sends.Load())
	if d.opts.Metrics != nil {
		d.opts.Metrics.SendRate.Set(measured)
	}
}

func (d *Dispatcher) refreshLine(ctx context.Context) {
	b, err := d.store.Backlog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("dispatch: reading the backlog failed", "err", err)
		}
		return
	}
	d.line.head.Store(b.HeadSeq)
	d.line.waiting.Store(b.Waiting)
	d.line.oldest.Store(b.Oldest.UnixNano())
}

// Place implements the API's Line: how many donations wait ahead of don,
// and when it is expected to be charged. Sequence numbers are dense, so
// the distance from the head of the line counts those ahead; gifts that
// left the line out of order (canceled, or back with another card) make it
// an over-estimate, never an under-estimate, and it never exceeds the
// line's length.
func (d *Dispatcher) Place(don *floodgate.Donation) (int64, time.Duration, bool) {
	r := math.Float64frombits(d.line.predictRate.Load())
	if r <= 0 {
		r = d.link.Rate()
	}
	if r <= 0 {
		r = d.link.Configured()
	}
	// While the provider does not answer, nothing moves before the
	// breaker's next probe.
	var delay time.Duration
	if state, until := d.Charging(); state == floodgate.ChargingWaiting {
		delay = max(0, until.Sub(d.opts.Clock.Now()))
	}
	switch don.Status {
	case floodgate.StatusProcessing:
		return 0, delay + time.Duration(float64(time.Second)/r), true
	case floodgate.StatusAccepted:
	default:
		return 0, 0, false
	}
	ahead := max(0, min(don.Seq-d.line.head.Load(), d.line.waiting.Load()-1))
	// In memory and in flight are ahead too.
	behind := ahead + d.inFlight.Load()
	eta := delay + time.Duration(float64(behind+1)/r*float64(time.Second))
	return ahead, eta, true
}

// Charging reports whether this node charges now and, while it waits for
// the provider, when it probes next (Control's answer, for the API's
// Line).
func (d *Dispatcher) Charging() (floodgate.ChargingState, time.Time) {
	return d.link.charging()
}

// Backlog returns the line's length and age, as last read.
func (d *Dispatcher) Backlog() (waiting int64, age time.Duration) {
	w := d.line.waiting.Load()
	if w == 0 {
		return 0, 0
	}
	return w, d.opts.Clock.Now().Sub(time.Unix(0, d.line.oldest.Load()))
}
