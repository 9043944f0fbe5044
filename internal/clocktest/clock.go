// Package clocktest provides clocks that tests move by hand: Manual, which
// stands still until told to move, and Shifted, the wall clock that a test
// can make jump forward. Timers on either fire when their clock reaches
// them, so a test that jumps past a timeout never waits for it.
package clocktest

import (
	"slices"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// timer is a floodgate.Timer on a test clock. Its channel holds at most
// one value, emptied by Stop and Reset: no value prepared before either
// is received after it, as with time.Timer.
type timer struct {
	c     chan time.Time
	when  time.Time
	armed bool
	// sched schedules the timer on its clock; stop unschedules it. Both
	// run under the clock's lock.
	sched func(*timer)
	stop  func(*timer)
	mu    *sync.Mutex // the clock's
	now   func() time.Time
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.disarm()
}

func (t *timer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.disarm()
	t.when = t.now().Add(d)
	if d <= 0 {
		t.c <- t.when
		return was
	}
	t.armed = true
	t.sched(t)
	return was
}

// disarm stops t and drops a value it delivered but nobody received; it
// reports whether t was still to fire. The clock's lock is held.
func (t *timer) disarm() bool {
	was := t.armed
	if t.armed {
		t.armed = false
		t.stop(t)
	}
	select {
	case <-t.c:
		was = true // fired, but nobody had the value yet: it never fired
	default:
	}
	return was
}

// fire delivers the time to t. The clock's lock is held.
func (t *timer) fire(now time.Time) {
	t.armed = false
	select {
	case t.c <- now:
	default: // cannot happen: disarm emptied the channel before arming
	}
}

// Manual is a floodgate.Clock that only moves when told to. Its timers
// fire when Advance or Set takes it to or past their time.
type Manual struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	changed chan struct{} // closed and replaced whenever a timer is armed
}

var _ floodgate.Clock = (*Manual)(nil)

// New returns a Manual clock set to t (UTC).
func New(t time.Time) *Manual { return &Manual{now: t.UTC(), changed: make(chan struct{})} }

// Now returns the clock's time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// NewTimer returns a timer that fires when the clock reaches d from now.
func (m *Manual) NewTimer(d time.Duration) floodgate.Timer {
	t := &timer{c: make(chan time.Time, 1), mu: &m.mu, now: m.unlockedNow,
		sched: func(t *timer) {
			m.timers = append(m.timers, t)
			close(m.changed)
			m.changed = make(chan struct{})
		},
		stop: func(t *timer) { m.timers = slices.DeleteFunc(m.timers, func(x *timer) bool { return x == t }) },
	}
	t.Reset(d)
	return t
}

func (m *Manual) unlockedNow() time.Time { return m.now }

// Advance moves the clock forward by d, firing the timers it reaches.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.moveTo(m.now.Add(d))
}

// Set moves the clock to t, firing the timers it reaches.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.moveTo(t.UTC())
}

func (m *Manual) moveTo(t time.Time) {
	m.now = t
	due := slices.DeleteFunc(slices.Clone(m.timers), func(x *timer) bool { return x.when.After(t) })
	slices.SortStableFunc(due, func(a, b *timer) int { return a.when.Compare(b.when) })
	m.timers = slices.DeleteFunc(m.timers, func(x *timer) bool { return !x.when.After(t) })
	for _, x := range due {
		x.fire(t)
	}
}

// Timers is the number of timers waiting for the clock to reach them.
func (m *Manual) Timers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// WaitTimers blocks until at least n timers wait on the clock: the
// goroutines a test is about to move past their waits are waiting.
func (m *Manual) WaitTimers(n int) {
	for {
		m.mu.Lock()
		ok, changed := len(m.timers) >= n, m.changed
		m.mu.Unlock()
		if ok {
			return
		}
		<-changed
	}
}

// AdvanceToNext moves the clock to the earliest armed timer and fires
// it (and any due at the same time); it reports false, and does not
// move, when no timer is armed.
func (m *Manual) AdvanceToNext() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.timers) == 0 {
		return false
	}
	next := m.timers[0].when
	for _, t := range m.timers[1:] {
		if t.when.Before(next) {
			next = t.when
		}
	}
	if next.After(m.now) {
		m.moveTo(next)
	} else {
		m.moveTo(m.now)
	}
	return true
}

// Shifted is the wall clock moved by an offset a test can grow: time
// keeps running, and a test can jump past a long timeout at a moment it
// chooses instead of racing a short one. A timer fires when the shifted
// time reaches it, by the wall clock's running or by a jump.
type Shifted struct {
	mu     sync.Mutex
	offset time.Duration
	timers map[*timer]*time.Timer // armed, with the wall-clock timer that fires each
}

var _ floodgate.Clock = (*Shifted)(nil)

// Now returns the wall time plus the offset, in UTC.
func (s *Shifted) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.unlockedNow()
}

func (s *Shifted) unlockedNow() time.Time { return time.Now().UTC().Add(s.offset) }

// NewTimer returns a timer that fires when the shifted time reaches d
// from now.
func (s *Shifted) NewTimer(d time.Duration) floodgate.Timer {
	t := &timer{c: make(chan time.Time, 1), mu: &s.mu, now: s.unlockedNow}
	t.sched = func(t *timer) {
		if s.timers == nil {
			s.timers = map[*timer]*time.Timer{}
		}
		var w *time.Timer
		w = time.AfterFunc(t.when.Sub(s.unlockedNow()), func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			// A wall-clock timer that lost the race with Stop, Reset or a
			// jump finds its timer no longer armed by it.
			if s.timers[t] == w {
				delete(s.timers, t)
				t.fire(s.unlockedNow())
			}
		})
		s.timers[t] = w
	}
	t.stop = func(t *timer) {
		if w := s.timers[t]; w != nil {
			w.Stop()
			delete(s.timers, t)
		}
	}
	t.Reset(d)
	return t
}

// Jump moves the clock forward by d, firing the timers it reaches; it
// keeps running from there.
func (s *Shifted) Jump(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
	now := s.unlockedNow()
	for t, w := range s.timers {
		if !t.when.After(now) {
			w.Stop()
			delete(s.timers, t)
			t.fire(now)
		}
	}
}
