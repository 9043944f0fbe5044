package floodgate

import (
	"context"
	"time"
)

// Clock tells the time and times waits. Services take one so that tests
// can move time instead of sleeping: every sleep, timer and period of a
// service runs on its clock.
type Clock interface {
	Now() time.Time
	// NewTimer returns a Timer that fires once d has passed on this
	// clock (at once when d <= 0).
	NewTimer(d time.Duration) Timer
}

// Timer is a time.Timer on a Clock. As with time.Timer since Go 1.23, no
// value prepared before a Stop or a Reset is received after it.
type Timer interface {
	// C delivers the time once the timer fires.
	C() <-chan time.Time
	// Stop keeps the timer from firing; false means it had already
	// fired or been stopped.
	Stop() bool
	// Reset makes the timer fire d from now; false means it had already
	// fired or been stopped.
	Reset(d time.Duration) bool
}

// SystemClock is the wall clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// NewTimer returns a time.Timer.
func (SystemClock) NewTimer(d time.Duration) Timer { return systemTimer{time.NewTimer(d)} }

type systemTimer struct{ t *time.Timer }

func (t systemTimer) C() <-chan time.Time        { return t.t.C }
func (t systemTimer) Stop() bool                 { return t.t.Stop() }
func (t systemTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// Sleep waits d on c, or until ctx ends; it reports whether it waited in
// full (false: ctx ended). A wait of d <= 0 returns at once.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// Every calls f every period on c until ctx ends; the first call comes
// one period after the start, and each period counts from the end of the
// call before.
func Every(ctx context.Context, c Clock, period time.Duration, f func(context.Context)) {
	t := c.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			f(ctx)
			t.Reset(period)
		}
	}
}
