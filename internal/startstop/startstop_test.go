package startstop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when a goroutine outlives them: Stop
// must leave nothing of a run behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// looper is a service with one goroutine that runs until its context
// ends, recording the context's cause.
type looper struct {
	Base
	fail    error // when set, Start fails after launching its goroutine
	starts  atomic.Int32
	ends    atomic.Int32 // runs whose stop work was done
	causes  chan error
	entered chan struct{} // closed by the first goroutine once it runs
	once    sync.Once
	log     *[]string
	name    string
	mu      *sync.Mutex
}

func newLooper() *looper {
	return &looper{causes: make(chan error, 8), entered: make(chan struct{})}
}

func (l *looper) Start(ctx context.Context) error {
	if _, ok := l.StartInit(ctx); !ok {
		return nil
	}
	l.starts.Add(1)
	l.note("start")
	l.Go(func(ctx context.Context) {
		l.once.Do(func() { close(l.entered) })
		<-ctx.Done()
		l.causes <- context.Cause(ctx)
	})
	l.AtStop(func() { l.ends.Add(1); l.note("stop") })
	return l.StartDone(l.fail)
}

func (l *looper) note(what string) {
	if l.log == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	*l.log = append(*l.log, l.name+" "+what)
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestStartStop(t *testing.T) {
	l := newLooper()
	started, stopped := l.Started(), l.Stopped()
	if closed(started) || closed(stopped) {
		t.Fatal("signals closed before any start")
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !closed(started) || closed(stopped) || !l.Running() {
		t.Fatalf("after Start: started %v stopped %v running %v", closed(started), closed(stopped), l.Running())
	}
	<-l.entered
	// A second Start while running does nothing.
	if err := l.Start(context.Background()); err != nil || l.starts.Load() != 1 {
		t.Fatalf("second Start: %v, %d starts", err, l.starts.Load())
	}
	l.Stop()
	if !closed(stopped) || l.Running() {
		t.Fatal("Stop returned before the run was over")
	}
	if cause := <-l.causes; !errors.Is(cause, ErrStop) {
		t.Fatalf("cause at Stop = %v, want ErrStop", cause)
	}
	l.Stop() // twice: nothing to do
	if !closed(l.Stopped()) || !closed(l.Started()) {
		t.Fatal("after the run, its signals must read closed")
	}
}

func TestStopWithoutStart(t *testing.T) {
	var b Base
	b.Stop()
	b.Stop()
	if b.Running() {
		t.Fatal("running without a start")
	}
}

// TestRestart: a stopped service starts again with fresh signals, and its
// new run is whole.
func TestRestart(t *testing.T) {
	l := newLooper()
	for run := range 3 {
		if err := l.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		stopped := l.Stopped()
		if closed(stopped) {
			t.Fatalf("run %d: Stopped is the last run's", run)
		}
		l.Stop()
		if !closed(stopped) {
			t.Fatalf("run %d: not stopped", run)
		}
		if cause := <-l.causes; !errors.Is(cause, ErrStop) {
			t.Fatalf("run %d: cause %v", run, cause)
		}
	}
	if l.starts.Load() != 3 {
		t.Fatalf("%d starts, want 3", l.starts.Load())
	}
}

// TestFailedStart: a Start that fails stops what it launched, does its
// stop work, and leaves the service able to start again.
func TestFailedStart(t *testing.T) {
	boom := errors.New("boom")
	var log []string
	l := newLooper()
	l.log, l.name, l.mu = &log, "l", &sync.Mutex{}
	l.fail = boom
	if err := l.Start(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("Start = %v, want boom", err)
	}
	if cause := <-l.causes; !errors.Is(cause, boom) {
		t.Fatalf("the launched goroutine ended with %v, want boom", cause)
	}
	if !closed(l.Started()) || !closed(l.Stopped()) || l.Running() {
		t.Fatal("a failed start must read started and stopped, not running")
	}
	if want := []string{"l start", "l stop"}; !slices.Equal(log, want) {
		t.Fatalf("log %v, want %v", log, want)
	}
	l.fail = nil
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Stop()
}

// TestParentContextEndsRun: the run ends when Start's context ends, with
// that context's cause, and Stopped closes without a Stop.
func TestParentContextEndsRun(t *testing.T) {
	l := newLooper()
	ctx, cancel := context.WithCancelCause(context.Background())
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	stopped := l.Stopped()
	gone := errors.New("parent gone")
	cancel(gone)
	<-stopped
	if cause := <-l.causes; !errors.Is(cause, gone) {
		t.Fatalf("cause %v, want the parent's", cause)
	}
	if l.Running() {
		t.Fatal("running after its context ended")
	}
	l.Stop() // nothing left to stop
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	l.Stop()
}

// TestWithin: work done on a caller's goroutine is refused outside a run,
// sees its context end at Stop, and holds Stop until it returns.
func TestWithin(t *testing.T) {
	var b Base
	if b.Within(context.Background(), func(context.Context) { t.Fatal("ran before Start") }) {
		t.Fatal("Within before Start")
	}
	if _, ok := b.StartInit(context.Background()); !ok {
		t.Fatal("StartInit refused")
	}
	if b.Within(context.Background(), func(context.Context) { t.Fatal("ran during Start") }) {
		t.Fatal("Within during Start")
	}
	_ = b.StartDone(nil)

	entered, canceled, release := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var cause error
	done := make(chan bool)
	go func() {
		done <- b.Within(context.Background(), func(ctx context.Context) {
			close(entered)
			<-ctx.Done()
			cause = context.Cause(ctx)
			close(canceled)
			<-release
		})
	}()
	<-entered
	stopped := b.Stopped()
	stopReturned := make(chan struct{})
	go func() {
		b.Stop()
		close(stopReturned)
	}()
	<-canceled
	// The run's context has ended, but the work has not returned: the run
	// is not over, and only the release below lets it end.
	if closed(stopped) || closed(stopReturned) {
		t.Fatal("the run ended while its work was in flight")
	}
	close(release)
	if !<-done {
		t.Fatal("Within reported its work not run")
	}
	<-stopReturned
	if !errors.Is(cause, ErrStop) {
		t.Fatalf("the work's context ended with %v, want ErrStop", cause)
	}
	if b.Within(context.Background(), func(context.Context) { t.Fatal("ran after Stop") }) {
		t.Fatal("Within after Stop")
	}
}

// TestStopDuringStart: a Stop that comes while Start is under way waits
// for it, then ends the run.
func TestStopDuringStart(t *testing.T) {
	var b Base
	ctx, _ := b.StartInit(context.Background())
	stopReturned := make(chan struct{})
	go func() {
		b.Stop()
		close(stopReturned)
	}()
	<-ctx.Done() // Stop has canceled the starting run
	if closed(stopReturned) {
		t.Fatal("Stop returned before Start was done")
	}
	ran := b.Go(func(ctx context.Context) { <-ctx.Done() })
	if ran {
		t.Fatal("Go launched work in a run already canceled")
	}
	if err := b.StartDone(nil); err != nil {
		t.Fatal(err)
	}
	<-stopReturned
	if b.Running() {
		t.Fatal("running after Stop")
	}
}

// TestAtStopOrder: stop work runs after the goroutines, in reverse order
// of registration, before Stopped closes.
func TestAtStopOrder(t *testing.T) {
	var b Base
	var log []string
	var mu sync.Mutex
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, s)
	}
	b.StartInit(context.Background())
	b.Go(func(ctx context.Context) {
		<-ctx.Done()
		add("goroutine")
	})
	b.AtStop(func() { add("first registered") })
	b.AtStop(func() { add("second registered") })
	_ = b.StartDone(nil)
	stopped := b.Stopped()
	b.Stop()
	<-stopped
	if want := []string{"goroutine", "second registered", "first registered"}; !slices.Equal(log, want) {
		t.Fatalf("order %v, want %v", log, want)
	}
}

// TestGroup: services start in order and stop in reverse; a failed start
// stops those already started, in reverse, and starts none after it.
func TestGroup(t *testing.T) {
	var log []string
	mu := &sync.Mutex{}
	mk := func(name string, fail error) *looper {
		l := newLooper()
		l.log, l.name, l.mu, l.fail = &log, name, mu, fail
		return l
	}
	a, b, c := mk("a", nil), mk("b", nil), mk("c", nil)
	g := NewGroup(a, nil, b, c)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	g.Stop()
	g.Stop()
	if want := []string{"a start", "b start", "c start", "c stop", "b stop", "a stop"}; !slices.Equal(log, want) {
		t.Fatalf("log %v, want %v", log, want)
	}

	log = nil
	boom := errors.New("boom")
	a, b, c = mk("a", nil), mk("b", boom), mk("c", nil)
	if err := NewGroup(a, b, c).Start(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("group start = %v, want boom", err)
	}
	if want := []string{"a start", "b start", "b stop", "a stop"}; !slices.Equal(log, want) {
		t.Fatalf("log %v, want %v", log, want)
	}
	if c.starts.Load() != 0 || a.Running() {
		t.Fatal("the group went on after a failed start, or left one running")
	}
}

// TestConcurrentStartStop runs starts, stops and work at once, for the
// race detector; every run must end whole.
func TestConcurrentStartStop(t *testing.T) {
	l := newLooper()
	l.causes = make(chan error, 1024) // one a run at most, never read
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 50 {
				switch (i + j) % 3 {
				case 0:
					if err := l.Start(context.Background()); err != nil {
						panic(fmt.Sprint("start: ", err))
					}
				case 1:
					l.Stop()
				default:
					l.Within(context.Background(), func(ctx context.Context) {})
				}
			}
		}()
	}
	wg.Wait()
	l.Stop()
	if l.Running() {
		t.Fatal("running after the last Stop")
	}
	if got, want := l.ends.Load(), l.starts.Load(); got != want {
		t.Fatalf("%d runs ended of %d started", got, want)
	}
}
