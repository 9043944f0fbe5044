// Package clocktest provides a clock that tests move by hand.
package clocktest

import (
	"sync"
	"time"
)

// Manual is a floodgate.Clock that only moves when told to.
type Manual struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a Manual clock set to t (UTC).
func New(t time.Time) *Manual { return &Manual{now: t.UTC()} }

// Now returns the clock's time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Advance moves the clock forward by d.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
}

// Set moves the clock to t.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = t.UTC()
}

// Shifted is the wall clock moved by an offset a test can grow: time
// keeps running, and a test can jump past a long timeout at a moment it
// chooses instead of racing a short one.
type Shifted struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the wall time plus the offset, in UTC.
func (s *Shifted) Now() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Now().UTC().Add(s.offset)
}

// Jump moves the clock forward by d; it keeps running from there.
func (s *Shifted) Jump(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset += d
}
