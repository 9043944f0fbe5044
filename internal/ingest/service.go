package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/floodgate/floodgate"
)

// Options configure a Service.
type Options struct {
	Batch BatcherOptions
	// CampaignTTL is how long a campaign read from the store is trusted on
	// the accept path. A change made on another node (a campaign closed)
	// applies here within this time; changes made here apply at once.
	CampaignTTL time.Duration
	Clock       floodgate.Clock
	// Guard, when set, limits attempts per suspect address and per email
	// before anything is queued; Refused is told each refusal's reason.
	Guard   *Guard
	Refused func(reason string)
}

// Accepted is the answer to an accepted donation.
type Accepted struct {
	Donation *floodgate.Donation
	// Replayed is set when the idempotency key had been used with the
	// same request before: the donation is the one stored then.
	Replayed   bool
	DonorToken string
}

// Store is the roles the accept path uses: the intake it commits to, the
// campaigns it caches, and the setting that holds its donor-token secret.
type Store interface {
	floodgate.Intakes
	floodgate.Campaigns
	floodgate.Settings
}

// Service validates donations and makes them durable through the batcher.
type Service struct {
	store   Store
	clock   floodgate.Clock
	batcher *Batcher[floodgate.Intake, floodgate.AcceptResult]
	tokens  *Tokens
	ttl     time.Duration
	guard   *Guard
	refused func(string)

	mu        sync.RWMutex
	campaigns map[string]cachedCampaign
}

type cachedCampaign struct {
	c  *floodgate.Campaign
	at time.Time
}

// New returns a started Service. Stop drains it.
func New(ctx context.Context, store Store, opts Options) (*Service, error) {
	if opts.Clock == nil {
		opts.Clock = floodgate.SystemClock{}
	}
	if opts.CampaignTTL <= 0 {
		opts.CampaignTTL = time.Second
	}
	secret, err := store.Secret(ctx, "donor-token")
	if err != nil {
		return nil, err
	}
	s := &Service{store: store, clock: opts.Clock, tokens: NewTokens(secret), ttl: opts.CampaignTTL,
		campaigns: map[string]cachedCampaign{}, guard: opts.Guard, refused: opts.Refused}
	s.batcher = NewBatcher(opts.Batch, store.Accept)
	return s, nil
}

// Tokens returns the donor-token maker this service hands out.
func (s *Service) Tokens() *Tokens { return s.tokens }

// QueueLen is the number of donations waiting for a commit.
func (s *Service) QueueLen() int { return s.batcher.Len() }

// Stop refuses new donations and commits those already queued.
func (s *Service) Stop() { s.batcher.Stop() }

// Campaign returns a campaign, from the cache when fresh. ENOTFOUND.
func (s *Service) Campaign(ctx context.Context, id string) (*floodgate.Campaign, error) {
	now := s.clock.Now()
	s.mu.RLock()
	e, ok := s.campaigns[id]
	s.mu.RUnlock()
	if ok && now.Sub(e.at) < s.ttl {
		return e.c, nil
	}
	if !floodgate.ValidCampaignID(id) {
		return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
	}
	c, err := s.store.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	s.Remember(c)
	return c, nil
}

// replay answers a request whose key may already hold a donation: the
// donation kept under it, 422 if the body differs, or refusal (the reason
// a new donation cannot be taken) if the key is unused.
func (s *Service) replay(ctx context.Context, campaignID, key string, d *floodgate.Donation, refusal error) (*Accepted, error) {
	prev, err := s.store.DonationByKey(ctx, campaignID, key)
	if err != nil {
		if floodgate.ErrorCode(err) == floodgate.ENOTFOUND {
			return nil, refusal
		}
		return nil, err
	}
	res := floodgate.Replay(prev, d)
	if res.Err != nil {
		return nil, res.Err
	}
	return &Accepted{Donation: res.Donation(), Replayed: true, DonorToken: s.tokens.For(res.Donation().ID)}, nil
}

// Remember puts a campaign just written on this node in the cache.
func (s *Service) Remember(c *floodgate.Campaign) {
	s.mu.Lock()
	s.campaigns[c.ID] = cachedCampaign{c: c, at: s.clock.Now()}
	s.mu.Unlock()
}

// Donate validates body for campaignID and returns once the donation is
// durable (or was already, for a replayed key). clientAddr is kept with
// the donation, and the address limit counts it.
func (s *Service) Donate(ctx context.Context, campaignID, key string, body []byte, clientAddr string) (*Accepted, error) {
	if msg := floodgate.CheckIdempotencyKey(key); msg != "" {
		return nil, floodgate.Invalid("Idempotency-Key", "%s", msg)
	}
	c, err := s.Campaign(ctx, campaignID)
	if err != nil {
		return nil, err
	}
	req, err := DecodeDonation(body)
	if err != nil {
		return nil, err
	}
	d, err := req.Validate(c)
	if err != nil {
		return nil, err
	}
	if err := CheckOpen(c, s.clock.Now()); err != nil {
		// A key accepted while the campaign was open still answers its
		// donation: a donor whose 202 was lost at closing time retries.
		return s.replay(ctx, c.ID, key, d, err)
	}
	if s.guard != nil {
		if reason, err := s.guard.Allow(clientAddr, floodgate.NormalizeEmail(d.Email)); err != nil {
			// A retry of a gift already kept is answered, never limited:
			// the limits are for new attempts. Looked up only when a
			// limit refuses, so the accept path stays one commit.
			if a, lookErr := s.replay(ctx, c.ID, key, d, err); lookErr == nil || floodgate.ErrorCode(lookErr) == floodgate.EIDEMMISMATCH {
				return a, lookErr
			}
			if s.refused != nil {
				s.refused(reason)
			}
			return nil, err
		}
	}
	d.IdempotencyKey, d.ClientAddr = key, clientAddr
	res, err := s.batcher.Submit(ctx, d)
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return nil, res.Err
	}
	return &Accepted{Donation: res.Donation(), Replayed: res.Replayed, DonorToken: s.tokens.For(res.Donation().ID)}, nil
}

// AllowAttempt applies the donation limits to an attempt that is not a
// new gift: a new card for a declined one, from clientAddr, for the
// gift's email. It refuses with ERATELIMITED exactly as Donate does.
func (s *Service) AllowAttempt(clientAddr, email string) error {
	if s.guard == nil {
		return nil
	}
	reason, err := s.guard.Allow(clientAddr, floodgate.NormalizeEmail(email))
	if err != nil && s.refused != nil {
		s.refused(reason)
	}
	return err
}
