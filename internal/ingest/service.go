package ingest

import (
	"context"
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

// Store is the roles the accept path uses: the intakes it commits, the
// campaigns it caches, and the setting that holds its donor-token secret.
type Store interface {
	floodgate.Intakes
	floodgate.Campaigns
	floodgate.Settings
}

// Service validates intakes and makes them durable through one batcher,
// whatever their kind.
type Service struct {
	store   Store
	clock   floodgate.Clock
	batcher *Batcher[floodgate.Intake, floodgate.AcceptResult]
	tokens  *Tokens
	guard   *Guard
	refused func(string)

	campaigns *holders[*floodgate.Campaign]
	donations *kind[*floodgate.Campaign, *floodgate.Donation]
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
	s := &Service{store: store, clock: opts.Clock, tokens: NewTokens(secret), guard: opts.Guard, refused: opts.Refused}
	s.campaigns = newHolders(opts.Clock, opts.CampaignTTL, func(ctx context.Context, id string) (*floodgate.Campaign, error) {
		if !floodgate.ValidCampaignID(id) {
			return nil, floodgate.Errorf(floodgate.ENOTFOUND, "Campaign %q not found.", id)
		}
		return store.Campaign(ctx, id)
	})
	s.donations = donationKind(s)
	if opts.Batch.Clock == nil {
		opts.Batch.Clock = opts.Clock
	}
	s.batcher = NewBatcher(opts.Batch, store.Accept)
	// The batcher runs until Stop, whatever becomes of ctx.
	if err := s.batcher.Start(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return s, nil
}

// Tokens returns the donor-token maker this service hands out.
func (s *Service) Tokens() *Tokens { return s.tokens }

// QueueLen is the number of intakes waiting for a commit.
func (s *Service) QueueLen() int { return s.batcher.Len() }

// Stop refuses new intakes and commits those already queued.
func (s *Service) Stop() { s.batcher.Stop() }

// Campaign returns a campaign, from the cache when fresh. ENOTFOUND.
func (s *Service) Campaign(ctx context.Context, id string) (*floodgate.Campaign, error) {
	return s.campaigns.get(ctx, id)
}

// Remember puts a campaign just written on this node in the cache.
func (s *Service) Remember(c *floodgate.Campaign) { s.campaigns.remember(c.ID, c) }

// Donate validates body for campaignID and returns once the donation is
// durable (or was already, for a replayed key). clientAddr is kept with
// the donation, and the address limit counts it.
func (s *Service) Donate(ctx context.Context, campaignID, key string, body []byte, clientAddr string) (*Accepted[*floodgate.Donation], error) {
	return s.donations.accept(ctx, campaignID, key, body, clientAddr)
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
