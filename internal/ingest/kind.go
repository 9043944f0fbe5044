package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// Accepted is the answer to an accepted intake.
type Accepted[T floodgate.Intake] struct {
	// Item is the stored intake.
	Item T
	// Replayed is set when the idempotency key had been used with the
	// same request before: Item is the one stored then.
	Replayed bool
	// Token is the bearer token of the intake (a donation's donor token).
	Token string
}

// kind is one kind of intake's part of the accept path: what holds its
// intakes (H: a donation's campaign), how a request becomes an intake (T),
// when new ones are taken, and where a kept one is found by its key. Its
// accept method is the rest, written once for every kind.
type kind[H any, T floodgate.Intake] struct {
	s *Service
	// holders finds what holds an intake by id; ENOTFOUND.
	holders *holders[H]
	// build decodes body and validates it against h: the intake to store,
	// with its key and client address, or a client error.
	build func(h H, body []byte, key, clientAddr string) (T, error)
	// closed says why h takes no new intake at now; nil when it does.
	closed func(h H, now time.Time) error
	// email is the address the per-email limit counts.
	email func(T) string
	// byKey returns the intake kept under a key; ENOTFOUND.
	byKey func(ctx context.Context, k floodgate.IntakeKey) (T, error)
}

// accept validates body for the holder named id and returns once the
// intake is durable (or was already, for a replayed key): the key is
// checked, the holder looked up, the request built, the limits applied,
// and the intake committed by the batcher with every other kind's.
// clientAddr is kept with the intake, and the address limit counts it.
func (k *kind[H, T]) accept(ctx context.Context, id, key string, body []byte, clientAddr string) (*Accepted[T], error) {
	s := k.s
	if msg := floodgate.CheckIdempotencyKey(key); msg != "" {
		return nil, floodgate.Invalid("Idempotency-Key", "%s", msg)
	}
	h, err := k.holders.get(ctx, id)
	if err != nil {
		return nil, err
	}
	item, err := k.build(h, body, key, clientAddr)
	if err != nil {
		return nil, err
	}
	if err := k.closed(h, s.clock.Now()); err != nil {
		// A key accepted while new intakes were taken still answers its
		// intake: a client whose 202 was lost at closing time retries.
		return k.replay(ctx, item, err)
	}
	if s.guard != nil {
		if reason, err := s.guard.Allow(clientAddr, floodgate.NormalizeEmail(k.email(item))); err != nil {
			// A retry of an intake already kept is answered, never
			// limited: the limits are for new attempts. Looked up only
			// when a limit refuses, so the accept path stays one commit.
			if a, lookErr := k.replay(ctx, item, err); lookErr == nil || floodgate.ErrorCode(lookErr) == floodgate.EIDEMMISMATCH {
				return a, lookErr
			}
			if s.refused != nil {
				s.refused(reason)
			}
			return nil, err
		}
	}
	res, err := s.batcher.Submit(ctx, item)
	if err != nil {
		return nil, err
	}
	return k.answer(res)
}

// replay answers req when a new intake cannot be taken: with the intake
// kept under its key, as floodgate.Replay decides (422 if the request
// differs), or with refusal, the reason it cannot be taken, if the key is
// unused.
func (k *kind[H, T]) replay(ctx context.Context, req T, refusal error) (*Accepted[T], error) {
	prev, err := k.byKey(ctx, req.IntakeKey())
	if err != nil {
		if floodgate.ErrorCode(err) == floodgate.ENOTFOUND {
			return nil, refusal
		}
		return nil, err
	}
	return k.answer(floodgate.Replay(prev, req))
}

// answer turns one item's result into the client's answer.
func (k *kind[H, T]) answer(res floodgate.AcceptResult) (*Accepted[T], error) {
	if res.Err != nil {
		return nil, res.Err
	}
	item, ok := res.Intake.(T)
	if !ok {
		return nil, fmt.Errorf("ingest: the store answered a %T with a %T", *new(T), res.Intake)
	}
	return &Accepted[T]{Item: item, Replayed: res.Replayed, Token: k.s.tokens.For(item.IntakeID())}, nil
}

// holders caches what holds intakes (campaigns), by id, for the accept
// path: what was read from the store is trusted for ttl. A change made on
// another node (a campaign closed) applies here within ttl; changes made
// here apply at once (remember).
type holders[H any] struct {
	clock floodgate.Clock
	ttl   time.Duration
	fetch func(ctx context.Context, id string) (H, error)

	mu sync.RWMutex
	m  map[string]held[H]
}

type held[H any] struct {
	v  H
	at time.Time
}

func newHolders[H any](clock floodgate.Clock, ttl time.Duration, fetch func(context.Context, string) (H, error)) *holders[H] {
	return &holders[H]{clock: clock, ttl: ttl, fetch: fetch, m: map[string]held[H]{}}
}

// get returns the holder named id, from the cache when fresh.
func (c *holders[H]) get(ctx context.Context, id string) (H, error) {
	now := c.clock.Now()
	c.mu.RLock()
	e, ok := c.m[id]
	c.mu.RUnlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.v, nil
	}
	v, err := c.fetch(ctx, id)
	if err != nil {
		return v, err
	}
	c.remember(id, v)
	return v, nil
}

// remember puts a holder just read or written on this node in the cache.
func (c *holders[H]) remember(id string, v H) {
	c.mu.Lock()
	c.m[id] = held[H]{v: v, at: c.clock.Now()}
	c.mu.Unlock()
}
