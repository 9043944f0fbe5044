package ingest

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/startstop"
)

// CommitFunc makes a batch durable and returns one result per item, in
// order. An error means none of the batch was kept.
type CommitFunc[T, R any] func(ctx context.Context, items []T) ([]R, error)

// BatchObserver is told about every batch; it feeds metrics.
type BatchObserver interface {
	// Batch reports a batch of size items committed (err nil) or not, and
	// how long the commit took.
	Batch(size int, took time.Duration, err error)
}

// BatcherOptions bound a Batcher.
type BatcherOptions struct {
	// MaxBatch closes a batch at this many items.
	MaxBatch int
	// MaxWait closes a batch this long after its first item arrived.
	MaxWait time.Duration
	// Queue bounds the items waiting for a commit; past it Submit sheds.
	Queue int
	// RetryAfter is what a shed request is told.
	RetryAfter time.Duration
	// CommitTimeout bounds one commit; a stuck disk fails the batch (503)
	// rather than holding every donor forever. It is a deadline on the
	// store's own work, on the wall clock.
	CommitTimeout time.Duration
	Observer      BatchObserver
	// Clock times MaxWait (nil: the system clock).
	Clock floodgate.Clock
}

// ErrStopped is returned by Submit while the batcher does not run
// (before Start, after Stop).
var ErrStopped = &floodgate.Error{Code: floodgate.EUNAVAILABLE, Message: "The server is shutting down; try again.", RetryAfter: time.Second}

type request[T, R any] struct {
	item     T
	enqueued time.Time
	done     chan outcome[R]
}

type outcome[R any] struct {
	res R
	err error
}

// Batcher is a group-commit batcher: concurrent callers of Submit wait on
// the commit of the batch that holds their item, so many requests share one
// fsync. A batch closes at MaxBatch items or MaxWait after its first item,
// whichever comes first; while one batch commits, the next fills. Past
// Queue waiting items, Submit sheds with 503 overloaded at once instead of
// letting memory and latency grow. It takes items between Start and Stop.
type Batcher[T, R any] struct {
	startstop.Base
	opts   BatcherOptions
	commit CommitFunc[T, R]

	mu   sync.RWMutex // guards in and open against sends on a closed in
	in   chan *request[T, R]
	open bool // taking items: started, and Stop has not come
	pool sync.Pool
}

var _ startstop.Service = (*Batcher[int, int])(nil)

// NewBatcher returns a Batcher; Start runs it, Stop drains it.
func NewBatcher[T, R any](opts BatcherOptions, commit CommitFunc[T, R]) *Batcher[T, R] {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 1
	}
	if opts.Queue < opts.MaxBatch {
		opts.Queue = opts.MaxBatch
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	if opts.CommitTimeout <= 0 {
		opts.CommitTimeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	b := &Batcher[T, R]{opts: opts, commit: commit}
	b.pool.New = func() any { return &request[T, R]{done: make(chan outcome[R], 1)} }
	return b
}

// Start takes items from now on, until Stop (or until ctx ends, which
// stops it the same way).
func (b *Batcher[T, R]) Start(ctx context.Context) error {
	if _, ok := b.StartInit(ctx); !ok {
		return nil
	}
	in := make(chan *request[T, R], b.opts.Queue)
	b.mu.Lock()
	b.in, b.open = in, true
	b.mu.Unlock()
	b.Go(func(ctx context.Context) { b.loop(ctx, in) })
	return b.StartDone(nil)
}

// Len is the number of items waiting for a commit.
func (b *Batcher[T, R]) Len() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.in)
}

// Submit queues item and waits until the batch holding it has committed.
// It returns the item's result, the batch's error, EOVERLOADED when the
// queue is full, or ctx's error if the caller stops waiting (the item may
// still be committed: clients retry with the same idempotency key).
func (b *Batcher[T, R]) Submit(ctx context.Context, item T) (R, error) {
	var zero R
	r := b.pool.Get().(*request[T, R])
	r.item, r.enqueued = item, b.opts.Clock.Now()

	b.mu.RLock()
	if !b.open {
		b.mu.RUnlock()
		return zero, ErrStopped
	}
	select {
	case b.in <- r:
		b.mu.RUnlock()
	default:
		b.mu.RUnlock()
		b.pool.Put(r)
		return zero, &floodgate.Error{Code: floodgate.EOVERLOADED,
			Message: "Too many requests are waiting to be written; try again shortly.", RetryAfter: b.opts.RetryAfter}
	}
	select {
	case o := <-r.done:
		var zeroT T
		r.item = zeroT
		b.pool.Put(r)
		return o.res, o.err
	case <-ctx.Done():
		// The request stays with the batch; it is not returned to the pool
		// because the loop will still write to its channel.
		return zero, ctx.Err()
	}
}

// Stop refuses new items, commits everything already queued, and returns
// when the last batch is done. It is safe to call twice.
func (b *Batcher[T, R]) Stop() {
	b.shut() // at once, even while a commit holds the loop
	b.Base.Stop()
}

// shut refuses new items: in is closed, and what it holds is still read.
func (b *Batcher[T, R]) shut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open {
		b.open = false
		close(b.in)
	}
}

// loop commits batches until the run ends, then shuts the batcher and
// commits what was queued before it returns.
func (b *Batcher[T, R]) loop(ctx context.Context, in chan *request[T, R]) {
	stop := ctx.Done()
	batch := make([]*request[T, R], 0, b.opts.MaxBatch)
	items := make([]T, 0, b.opts.MaxBatch)
	timer := b.opts.Clock.NewTimer(time.Hour)
	timer.Stop()
	for {
		var first *request[T, R]
		select {
		case r, ok := <-in:
			if !ok {
				return
			}
			first = r
		case <-stop:
			b.shut()
			stop = nil
			continue
		}
		batch = append(batch[:0], first)
		open := true
		// Take what is already queued (it piled up during the last commit),
		// then wait for more until the batch is full or its time is up.
	drain:
		for len(batch) < b.opts.MaxBatch {
			select {
			case r, ok := <-in:
				if !ok {
					open = false
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		// The wait never exceeds MaxWait, even if the clock went back.
		wait := min(b.opts.MaxWait, b.opts.MaxWait-b.opts.Clock.Now().Sub(first.enqueued))
		if open && len(batch) < b.opts.MaxBatch && wait > 0 {
			timer.Reset(wait)
		fill:
			for len(batch) < b.opts.MaxBatch {
				select {
				case r, ok := <-in:
					if !ok {
						break fill
					}
					batch = append(batch, r)
				case <-timer.C():
					break fill
				case <-stop:
					// What is queued still joins this batch.
					b.shut()
					stop = nil
				}
			}
			timer.Stop()
		}
		items = items[:0]
		for _, r := range batch {
			items = append(items, r.item)
		}
		b.run(batch, items)
		clear(items)
	}
}

func (b *Batcher[T, R]) run(batch []*request[T, R], items []T) {
	ctx, cancel := context.WithTimeout(context.Background(), b.opts.CommitTimeout)
	start := time.Now()
	res, err := b.commit(ctx, items)
	cancel()
	if err == nil && len(res) != len(items) {
		err = errors.New("ingest: commit returned a wrong number of results")
	}
	if b.opts.Observer != nil {
		b.opts.Observer.Batch(len(items), time.Since(start), err)
	}
	if err != nil {
		err = &floodgate.Error{Code: floodgate.EUNAVAILABLE, Message: "The donation could not be stored; nothing was kept. Try again.",
			RetryAfter: time.Second, Err: err}
	}
	for i, r := range batch {
		o := outcome[R]{err: err}
		if err == nil {
			o.res = res[i]
		}
		r.done <- o
	}
}
