package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
)

// echo commits by returning each item doubled and records batch sizes.
type echo struct {
	mu      sync.Mutex
	batches [][]int
	fail    error
	gate    chan struct{} // when set, commits wait for it
	entered atomic.Int32  // commits begun
}

func (e *echo) commit(ctx context.Context, items []int) ([]int, error) {
	e.mu.Lock()
	e.batches = append(e.batches, append([]int(nil), items...))
	e.mu.Unlock()
	e.entered.Add(1)
	if e.gate != nil {
		<-e.gate
	}
	if e.fail != nil {
		return nil, e.fail
	}
	out := make([]int, len(items))
	for i, v := range items {
		out[i] = v * 2
	}
	return out, nil
}

// TestBatcherGroupsAndAnswersEach: items submitted while a commit is
// under way wait for the next one, together, up to MaxBatch; each gets its
// own answer. The first commit is held until every other item waits, so
// that the grouping does not depend on how fast the machine starts the
// callers.
func TestBatcherGroupsAndAnswersEach(t *testing.T) {
	e := &echo{gate: make(chan struct{})}
	const maxBatch, n = 16, 500
	b := startBatcher(t, BatcherOptions{MaxBatch: maxBatch, MaxWait: 5 * time.Millisecond, Queue: 1024}, e.commit)
	defer b.Stop()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := b.Submit(context.Background(), i)
			if err != nil || got != 2*i {
				errs <- errors.New("wrong answer")
			}
		}()
	}
	var first int
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.batches) != 1 {
			return false
		}
		first = len(e.batches[0])
		return first+b.Len() == n
	})
	close(e.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := 0
	for _, bt := range e.batches {
		if len(bt) > maxBatch {
			t.Fatalf("batch of %d items, MaxBatch is %d", len(bt), maxBatch)
		}
		total += len(bt)
	}
	if total != n {
		t.Fatalf("committed %d items, want %d", total, n)
	}
	// The items that waited behind the first commit went in full batches
	// (the last one possibly short).
	if want := 1 + (n-first+maxBatch-1)/maxBatch; len(e.batches) != want {
		t.Fatalf("%d batches for %d items that waited together behind a batch of %d, want %d", len(e.batches), n-first, first, want)
	}
}

// TestBatcherClosesOnTime: a lone item is committed once MaxWait has
// passed on the batcher's clock, not before, though the batch is not full.
func TestBatcherClosesOnTime(t *testing.T) {
	e := &echo{}
	clock := clocktest.New(time.Now())
	b := startBatcher(t, BatcherOptions{MaxBatch: 1000, MaxWait: time.Second, Queue: 1000, Clock: clock}, e.commit)
	type answer struct {
		got int
		err error
	}
	done := make(chan answer, 1)
	go func() {
		got, err := b.Submit(context.Background(), 21)
		done <- answer{got, err}
	}()
	clock.WaitTimers(1) // the batch waits for more items
	if e.entered.Load() != 0 {
		t.Fatal("committed before MaxWait")
	}
	clock.Advance(time.Second)
	if a := <-done; a.err != nil || a.got != 42 {
		t.Fatalf("Submit = %d, %v", a.got, a.err)
	}
}

// TestBatcherStartStop: a batcher takes items only while it runs, and runs
// again after a Stop.
func TestBatcherStartStop(t *testing.T) {
	e := &echo{}
	b := NewBatcher(BatcherOptions{MaxBatch: 4, MaxWait: time.Microsecond, Queue: 4}, e.commit)
	if _, err := b.Submit(context.Background(), 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("Submit before Start = %v", err)
	}
	for run := range 2 {
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Submit(context.Background(), run); err != nil || got != 2*run {
			t.Fatalf("run %d: Submit = %d, %v", run, got, err)
		}
		b.Stop()
		if _, err := b.Submit(context.Background(), 1); !errors.Is(err, ErrStopped) {
			t.Fatalf("run %d: Submit after Stop = %v", run, err)
		}
	}
}

// TestBatcherFailedCommitFailsEveryItem: one failed commit answers every
// request of its batch with 503 unavailable, never with a result.
func TestBatcherFailedCommitFailsEveryItem(t *testing.T) {
	e := &echo{fail: errors.New("disk full"), gate: make(chan struct{})}
	b := startBatcher(t, BatcherOptions{MaxBatch: 8, MaxWait: time.Hour, Queue: 64}, e.commit)
	defer b.Stop()
	var wg sync.WaitGroup
	var unavailable atomic.Int32
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Submit(context.Background(), i)
			var fe *floodgate.Error
			if errors.As(err, &fe) && fe.Code == floodgate.EUNAVAILABLE && fe.RetryAfter > 0 {
				unavailable.Add(1)
			}
		}()
	}
	close(e.gate)
	wg.Wait()
	if got := unavailable.Load(); got != 8 {
		t.Fatalf("%d of 8 requests got 503 unavailable", got)
	}
}

// TestBatcherShedsPastItsQueue: with the writer stuck, the queue fills and
// the next Submit is answered overloaded at once, with a Retry-After.
func TestBatcherShedsPastItsQueue(t *testing.T) {
	e := &echo{gate: make(chan struct{})}
	b := startBatcher(t, BatcherOptions{MaxBatch: 2, MaxWait: time.Microsecond, Queue: 4}, e.commit)
	var wg sync.WaitGroup
	results := make(chan error, 16)
	// The first item's batch blocks in commit; then 4 more fill the queue.
	submit := func(i int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Submit(context.Background(), i)
			results <- err
		}()
	}
	submit(0)
	waitFor(t, func() bool { return e.entered.Load() == 1 })
	for i := range 4 {
		submit(10 + i)
	}
	waitFor(t, func() bool { return b.Len() == 4 })
	_, err := b.Submit(context.Background(), 99)
	var fe *floodgate.Error
	if !errors.As(err, &fe) || fe.Code != floodgate.EOVERLOADED || fe.RetryAfter <= 0 {
		t.Fatalf("Submit past the queue = %v, want overloaded with Retry-After", err)
	}
	close(e.gate)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Fatalf("queued request failed: %v", err)
		}
	}
	b.Stop()
}

// TestBatcherStopDrains: Stop commits what is queued, then refuses more;
// a second Stop is harmless.
func TestBatcherStopDrains(t *testing.T) {
	e := &echo{gate: make(chan struct{})}
	b := startBatcher(t, BatcherOptions{MaxBatch: 4, MaxWait: time.Microsecond, Queue: 64}, e.commit)
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Submit(context.Background(), i); err == nil {
				ok.Add(1)
			}
		}()
	}
	// Every item is inside the batcher: in the batch stuck in commit, or
	// queued. (One sent after Stop would rightly be refused.)
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.batches) == 1 && len(e.batches[0])+b.Len() == 20
	})
	stopped := make(chan struct{})
	go func() { b.Stop(); close(stopped) }()
	waitFor(t, func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return !b.open
	})
	close(e.gate)
	<-stopped
	wg.Wait()
	if ok.Load() != 20 {
		t.Fatalf("%d of 20 queued items committed by Stop", ok.Load())
	}
	if _, err := b.Submit(context.Background(), 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("Submit after Stop = %v", err)
	}
	b.Stop()
}

// startBatcher returns a started Batcher, stopped when the test ends.
func startBatcher(tb testing.TB, opts BatcherOptions, commit CommitFunc[int, int]) *Batcher[int, int] {
	tb.Helper()
	b := NewBatcher(opts, commit)
	if err := b.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Stop)
	return b
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkBatcher is the batcher's own cost per item, with 256 callers
// and a commit that does nothing: what grouping adds to every request.
func BenchmarkBatcher(b *testing.B) {
	e := func(ctx context.Context, items []int) ([]int, error) { return items, nil }
	bt := startBatcher(b, BatcherOptions{MaxBatch: 256, MaxWait: 200 * time.Microsecond, Queue: 4096}, e)
	defer bt.Stop()
	b.SetParallelism(128)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bt.Submit(context.Background(), 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
