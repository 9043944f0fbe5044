package clocktest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/floodgate/floodgate"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func fired(t floodgate.Timer) bool {
	select {
	case <-t.C():
		return true
	default:
		return false
	}
}

// TestManualTimers: a timer fires when the clock reaches it, not before,
// once; Stop and Reset leave no stale value behind.
func TestManualTimers(t *testing.T) {
	c := New(t0)
	a, b := c.NewTimer(time.Second), c.NewTimer(3*time.Second)
	if c.Timers() != 2 {
		t.Fatalf("%d timers armed, want 2", c.Timers())
	}
	c.Advance(999 * time.Millisecond)
	if fired(a) || fired(b) {
		t.Fatal("fired before its time")
	}
	c.Advance(time.Millisecond)
	select {
	case at := <-a.C():
		if !at.Equal(t0.Add(time.Second)) {
			t.Fatalf("fired with %v", at)
		}
	default:
		t.Fatal("not fired at its time")
	}
	if fired(b) || c.Timers() != 1 {
		t.Fatalf("b fired early, or %d timers armed", c.Timers())
	}
	c.Advance(time.Hour)
	if fired(a) {
		t.Fatal("fired twice")
	}
	// b fired but its value was not read: Stop drops it, as with
	// time.Timer, and reports it stopped in time.
	if !b.Stop() || fired(b) {
		t.Fatal("Stop after an unread fire")
	}
	if b.Stop() {
		t.Fatal("a second Stop reported a timer still to fire")
	}
	// Reset re-arms; a zero wait fires at once.
	if b.Reset(time.Minute) || c.Timers() != 1 {
		t.Fatal("Reset of a stopped timer")
	}
	if !b.Reset(0) || !fired(b) || c.Timers() != 0 {
		t.Fatal("Reset(0) must fire at once and unarm")
	}
	if z := c.NewTimer(-time.Second); !fired(z) {
		t.Fatal("a timer for the past fires at once")
	}
}

// TestManualOrder: timers reached by one move fire in their order, and
// AdvanceToNext walks them one at a time.
func TestManualOrder(t *testing.T) {
	c := New(t0)
	late, early := c.NewTimer(2*time.Second), c.NewTimer(time.Second)
	if !c.AdvanceToNext() || !fired(early) || fired(late) || !c.Now().Equal(t0.Add(time.Second)) {
		t.Fatalf("AdvanceToNext: now %v", c.Now())
	}
	if !c.AdvanceToNext() || !fired(late) || !c.Now().Equal(t0.Add(2*time.Second)) {
		t.Fatalf("AdvanceToNext: now %v", c.Now())
	}
	if c.AdvanceToNext() {
		t.Fatal("AdvanceToNext with nothing armed")
	}
	c.Set(t0)
	if !c.Now().Equal(t0) {
		t.Fatal("Set")
	}
}

// TestManualSleepAndEvery: Sleep and Every wait on the clock alone: a
// test moves a goroutine past its wait once WaitTimers says it waits.
func TestManualSleepAndEvery(t *testing.T) {
	c := New(t0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke := make(chan bool)
	go func() { woke <- floodgate.Sleep(ctx, c, time.Hour) }()
	c.WaitTimers(1)
	c.Advance(time.Hour)
	if !<-woke {
		t.Fatal("Sleep did not wait in full")
	}

	calls := make(chan time.Time)
	done := make(chan struct{})
	go func() {
		defer close(done)
		floodgate.Every(ctx, c, time.Minute, func(context.Context) { calls <- c.Now() })
	}()
	for i := 1; i <= 3; i++ {
		c.WaitTimers(1)
		c.Advance(time.Minute)
		if at := <-calls; !at.Equal(t0.Add(time.Hour + time.Duration(i)*time.Minute)) {
			t.Fatalf("call %d at %v", i, at)
		}
	}
	cancel()
	<-done
	if floodgate.Sleep(ctx, c, time.Second) {
		t.Fatal("Sleep on an ended context")
	}
}

// TestShiftedTimers: a timer on the shifted clock fires when a jump
// reaches it, and by itself when the wall clock does.
func TestShiftedTimers(t *testing.T) {
	var s Shifted
	long := s.NewTimer(time.Hour)
	stopped := s.NewTimer(time.Hour)
	if !stopped.Stop() {
		t.Fatal("Stop of an armed timer")
	}
	s.Jump(59 * time.Minute)
	if fired(long) {
		t.Fatal("fired before the jump reached it")
	}
	s.Jump(2 * time.Minute)
	select {
	case at := <-long.C():
		if d := s.Now().Sub(at); d < 0 || d > time.Minute {
			t.Fatalf("fired at %v, now %v", at, s.Now())
		}
	default:
		t.Fatal("the jump did not fire it")
	}
	if fired(stopped) {
		t.Fatal("a stopped timer fired")
	}
	// A short timer runs out on the wall clock by itself.
	short := s.NewTimer(time.Millisecond)
	<-short.C()
	if short.Stop() {
		t.Fatal("Stop after the fire was received")
	}
	// Reset re-arms for the shifted time.
	if short.Reset(time.Hour) {
		t.Fatal("Reset of a fired timer")
	}
	s.Jump(time.Hour)
	<-short.C()
}

// TestSystemClock: the system clock's timer is the wall clock's.
func TestSystemClock(t *testing.T) {
	c := floodgate.SystemClock{}
	tm := c.NewTimer(time.Millisecond)
	<-tm.C()
	if tm.Reset(time.Hour); !tm.Stop() {
		t.Fatal("Stop of an armed timer")
	}
	if !floodgate.Sleep(context.Background(), c, time.Millisecond) {
		t.Fatal("Sleep")
	}
	if c.Now().Location() != time.UTC {
		t.Fatal("not UTC")
	}
}
