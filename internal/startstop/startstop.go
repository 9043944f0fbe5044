// Package startstop is the life cycle every long-running part of floodgate
// shares. Start(ctx) launches the part's goroutines and returns; Stop ends
// them and returns once every one has returned. Stop tolerates a part
// that never started and a second Stop; a stopped part may be started
// again, with nothing left over from its last run.
//
// A service embeds Base and writes only its Start:
//
//	func (s *Sweeper) Start(ctx context.Context) error {
//		ctx, ok := s.StartInit(ctx)
//		if !ok {
//			return nil // running already
//		}
//		if err := s.prepare(ctx); err != nil {
//			return s.StartDone(err) // stops what was launched
//		}
//		s.Go(s.loop)
//		return s.StartDone(nil)
//	}
//
// A run lasts until Stop, or until the context given to Start ends.
package startstop

import (
	"context"
	"errors"
	"sync"
)

// ErrStop is the cause of a run's context when Stop ended it, so that a
// controlled stop can be told from the caller's context ending.
var ErrStop = errors.New("startstop: stopped")

// Service is a part that works in the background between Start and Stop.
type Service interface {
	// Start launches the service and returns; an error means it did not
	// start (nothing of it runs). Starting a running service does nothing.
	Start(ctx context.Context) error
	// Stop ends the service and returns once nothing of it runs. It
	// tolerates a service never started, and being called twice.
	Stop()
}

// phase is where a Base is in its life cycle.
type phase int

const (
	idle     phase = iota // never started, or its last run has ended
	starting              // between StartInit and StartDone
	running               // started; its context has not ended
	ending                // its context has ended; waiting for its goroutines
)

// Base keeps a service's life cycle: the run's context, its goroutines,
// the Started and Stopped signals, and the work to do once the run is
// over. The zero value is ready to use; it must not be copied.
type Base struct {
	mu      sync.Mutex
	phase   phase
	ctx     context.Context
	cancel  context.CancelCauseFunc
	wg      sync.WaitGroup
	started chan struct{}
	stopped chan struct{}
	used    bool     // started and stopped belong to a run that has begun
	atStop  []func() // run in reverse order once the run's goroutines returned
}

// StartInit begins a run. It returns the run's context, which ends at
// Stop (cause ErrStop) or when ctx ends, and false when the service runs
// already (Start then returns nil and does nothing). After true, Start
// must end with StartDone.
func (b *Base) StartInit(ctx context.Context) (context.Context, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.phase != idle {
		return ctx, false
	}
	if b.started == nil || b.used {
		b.started, b.stopped = make(chan struct{}), make(chan struct{})
	}
	b.used, b.phase, b.atStop = true, starting, nil
	b.ctx, b.cancel = context.WithCancelCause(ctx)
	return b.ctx, true
}

// StartDone ends Start and returns err. With err nil the service is
// running: Started closes. With an error the run's context ends, its
// goroutines are waited for and its AtStop work is done, and the service
// is stopped (Started and Stopped close) and may be started again.
func (b *Base) StartDone(err error) error {
	b.mu.Lock()
	if b.phase != starting {
		b.mu.Unlock()
		panic("startstop: StartDone without StartInit")
	}
	if err == nil {
		b.phase = running
		close(b.started)
		ctx := b.ctx
		b.mu.Unlock()
		go b.end(ctx)
		return nil
	}
	b.cancel(err)
	b.phase = ending
	b.mu.Unlock()
	b.finish()
	return err
}

// end waits for the run's context to end, then finishes the run.
func (b *Base) end(ctx context.Context) {
	<-ctx.Done()
	b.mu.Lock()
	b.phase = ending // from here Go and Within refuse: wg is about to be waited on
	b.mu.Unlock()
	b.finish()
}

// finish waits for the run's goroutines and work, does its AtStop work
// and marks it over.
func (b *Base) finish() {
	b.wg.Wait()
	b.mu.Lock()
	atStop := b.atStop
	b.atStop = nil
	b.mu.Unlock()
	for i := len(atStop) - 1; i >= 0; i-- {
		atStop[i]()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-b.started:
	default:
		close(b.started) // a failed start: waiters on Started must not hang
	}
	b.phase = idle
	b.cancel(nil)
	close(b.stopped)
}

// Stop ends the run and returns once its goroutines, its work in flight
// and its AtStop work are done. It does nothing when the service does not
// run. A Stop during Start waits for StartDone.
func (b *Base) Stop() {
	b.mu.Lock()
	if b.phase == idle {
		b.mu.Unlock()
		return
	}
	b.cancel(ErrStop)
	stopped := b.stopped
	b.mu.Unlock()
	<-stopped
}

// Go runs f in a goroutine of the run, with the run's context; Stop waits
// for it. Call it from Start or from a goroutine of the run. It returns
// false, and does not run f, once the run is ending or over.
func (b *Base) Go(f func(ctx context.Context)) bool {
	b.mu.Lock()
	if (b.phase != starting && b.phase != running) || b.ctx.Err() != nil {
		b.mu.Unlock()
		return false
	}
	b.wg.Add(1)
	ctx := b.ctx
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		f(ctx)
	}()
	return true
}

// Within runs f on the calling goroutine as work of the run: its context
// ends when ctx or the run ends, and Stop waits for it to return. It
// returns false, and does not run f, when the service is not running.
func (b *Base) Within(ctx context.Context, f func(ctx context.Context)) bool {
	b.mu.Lock()
	if b.phase != running || b.ctx.Err() != nil {
		b.mu.Unlock()
		return false
	}
	b.wg.Add(1)
	run := b.ctx
	b.mu.Unlock()
	defer b.wg.Done()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	release := context.AfterFunc(run, func() { cancel(context.Cause(run)) })
	defer release()
	f(ctx)
	return true
}

// AtStop registers f to run once the run is over: after every goroutine
// and every piece of work of the run returned, before Stopped closes, in
// the reverse order of registration. Call it from Start.
func (b *Base) AtStop(f func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.atStop = append(b.atStop, f)
}

// Running reports whether the service has started and its run has not
// begun to end.
func (b *Base) Running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.phase == running && b.ctx.Err() == nil
}

// Started returns a channel closed once the current run has started (or
// failed to): before any start, the coming run's; after a run, that run's
// (closed).
func (b *Base) Started() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.alloc()
	return b.started
}

// Stopped returns a channel closed once the current run is over: before
// any start, the coming run's; after a run, that run's (closed). Take it
// before calling Stop.
func (b *Base) Stopped() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.alloc()
	return b.stopped
}

func (b *Base) alloc() {
	if b.started == nil {
		b.started, b.stopped = make(chan struct{}), make(chan struct{})
	}
}

// Group starts services in order and stops them in the reverse order: a
// service may rely on those before it while it runs.
type Group struct {
	services []Service
}

var _ Service = (*Group)(nil)

// NewGroup returns a group of services, nil ones left out.
func NewGroup(services ...Service) *Group {
	g := &Group{}
	for _, s := range services {
		if s != nil {
			g.services = append(g.services, s)
		}
	}
	return g
}

// Start starts every service in order. When one fails, those already
// started are stopped, in reverse order, and its error is returned.
func (g *Group) Start(ctx context.Context) error {
	for i, s := range g.services {
		if err := s.Start(ctx); err != nil {
			stopAll(g.services[:i])
			return err
		}
	}
	return nil
}

// Stop stops every service, the last started first.
func (g *Group) Stop() { stopAll(g.services) }

func stopAll(services []Service) {
	for i := len(services) - 1; i >= 0; i-- {
		services[i].Stop()
	}
}
