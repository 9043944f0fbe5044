package floodgate

import (
	"context"
	"time"
)

// AcceptResult is the outcome of one intake in a batch given to
// Store.Accept.
type AcceptResult struct {
	// Intake is the stored intake, of the item's kind: the new one, or, for
	// a replayed idempotency key, the one first stored under it.
	Intake Intake
	// Replayed is set when the key was already used with the same request.
	Replayed bool
	// Err refuses this item alone, and the batch still commits:
	// EIDEMMISMATCH when the key was used with another request, ENOTFOUND
	// when the campaign does not exist.
	Err error
}

// Donation is the stored donation of a donation's result; nil when the
// item was refused.
func (r AcceptResult) Donation() *Donation {
	d, _ := r.Intake.(*Donation)
	return d
}

// Settlement is what a dispatcher or webhook learned about an order's
// payment. ApplySettlement decides what it does: it applies only if the
// order may move from its current status to Status (see CanMove) and, when
// made under a claim, while that claim still holds the order; otherwise
// the store returns the order unchanged and ESTATE.
type Settlement struct {
	OrderID string
	// Token, when not zero, is the fencing token of the claim the
	// settlement was made under (a dispatcher's charge); zero for what the
	// provider reports by itself (a webhook) or a timeout.
	Token  int64
	Status OrderStatus
	// From, when not empty, further restricts the statuses the order may
	// be in for the settlement to apply.
	From            []OrderStatus
	PaymentIntentID string
	ClientSecret    string
	NextAction      []byte
	FailureCode     string
	Note            string
	At              time.Time
}

// Backlog describes the line of orders waiting to be charged.
type Backlog struct {
	// Waiting is the number of orders in status accepted.
	Waiting int64
	// HeadSeq is the smallest Seq waiting (0 when none): an order's place
	// in line is close to Seq - HeadSeq.
	HeadSeq int64
	// Oldest is when the head of the line was accepted.
	Oldest time.Time
}

// The store is described by role: each consumer takes only the role it
// uses (the live-totals hub needs Totals, not the store). Store is all of
// them, the contract both engines pass in internal/storetest. Every method
// is safe for concurrent use; errors are *Error with the codes named, or
// internal.

// Campaigns keeps campaigns and their totals. The admin API, --demo and
// the accept path's campaign cache use it.
type Campaigns interface {
	// CreateCampaign stores a new campaign and its zero totals.
	// ECONFLICT if the id exists. Called by the admin API and --demo.
	CreateCampaign(ctx context.Context, c *Campaign) error
	// UpdateCampaign applies u at now and returns the result after
	// validation. ENOTFOUND, EINVALID.
	UpdateCampaign(ctx context.Context, id string, u CampaignUpdate, now time.Time) (*Campaign, error)
	// Campaign returns one campaign. ENOTFOUND.
	Campaign(ctx context.Context, id string) (*Campaign, error)
	// Campaigns lists every campaign, oldest first.
	Campaigns(ctx context.Context) ([]*Campaign, error)
	// Totals returns a campaign's totals. ENOTFOUND.
	Totals(ctx context.Context, campaignID string) (*Totals, error)
}

// Intakes makes accepted intakes durable: the accept path's one writer.
type Intakes interface {
	// Accept stores a batch of intakes of any kinds in one durable
	// transaction (fsync before it returns), each new one with its payment
	// order, and returns one result per item, in order. Each kind is
	// stored its own way; a key already held is answered by Replay; an item
	// refused alone (its result's Err) does not fail the others. IDs, Seq
	// and CreatedAt of new intakes are set by the store. An error means
	// nothing of the batch was kept. Called by the ingest batcher only.
	Accept(ctx context.Context, items []Intake) ([]AcceptResult, error)
	// DonationByKey returns the donation holding an idempotency key in a
	// campaign. ENOTFOUND. The accept path asks it only when a new gift is
	// refused (the campaign no longer open, a limit reached), so that a
	// replay still answers its donation.
	DonationByKey(ctx context.Context, campaignID, key string) (*Donation, error)
}

// Ledger reads donations and their history.
type Ledger interface {
	// Donation returns one donation with its order's state. ENOTFOUND.
	Donation(ctx context.Context, id string) (*Donation, error)
	// History returns a donation's status changes (its order's history),
	// oldest first. ENOTFOUND.
	History(ctx context.Context, id string) ([]StatusChange, error)
}

// Line is the line of payment orders waiting to be charged and every
// change made to them: claims and leases for the dispatcher, the outcomes
// it and the provider's webhooks report, and the donor's own cancel and
// retry.
//
// Leases and fencing are judged on the store's clock: the database's
// (PostgreSQL's clock, the same for every node) or, for a store only one
// process opens (SQLite), that process's clock.
type Line interface {
	// Backlog describes the line of waiting orders; it is cheap (index
	// look-ups only) whatever the line's length.
	Backlog(ctx context.Context) (Backlog, error)
	// Order returns one payment order. ENOTFOUND.
	Order(ctx context.Context, id string) (*PaymentOrder, error)
	// OrderOf returns the order of kind that pays for paysFor (a donation
	// id). ENOTFOUND.
	OrderOf(ctx context.Context, kind OrderKind, paysFor string) (*PaymentOrder, error)
	// OrderByPaymentIntent returns the order a PaymentIntent was recorded
	// for. ENOTFOUND.
	OrderByPaymentIntent(ctx context.Context, paymentIntentID string) (*PaymentOrder, error)
	// ClaimOrders moves up to n orders to processing for owner, in line
	// order, with a lease of lease from the store's clock, each under a
	// new fencing token. Orders already processing whose lease has run
	// out (their dispatcher died, or gave them up until then) come first:
	// they are taken over under a new token and resume with the same key.
	// A claimed order with no KeySince gets KeySince = the claim's time,
	// the instant its lease starts from.
	ClaimOrders(ctx context.Context, owner string, n int, lease time.Duration) ([]*PaymentOrder, error)
	// ExtendClaims renews, to lease from the store's clock, each claim
	// that still holds its order (see PaymentOrder.Held), and returns how
	// many did; a claim no longer held is left alone.
	ExtendClaims(ctx context.Context, claims []Claim, lease time.Duration) (int, error)
	// ReleaseClaims lets other dispatchers resume the orders these claims
	// still hold at once (a clean shutdown); a claim no longer held is
	// left alone.
	ReleaseClaims(ctx context.Context, claims []Claim) error
	// TakeBackClaims ends every claim at once: each processing order's
	// lease runs out now, under a new fencing token, so that nothing a
	// former holder sends applies. A single-node store does that at
	// start-up, after a crash, when no other dispatcher can be alive.
	TakeBackClaims(ctx context.Context) error
	// Defer gives up claim c until wait from the store's clock, as
	// ApplyDefer decides: the order keeps its status and key, and any
	// dispatcher resumes it after that time. ENOTFOUND; ESTATE unless
	// processing and held by c.
	Defer(ctx context.Context, c Claim, wait time.Duration) error
	// NewKeyGeneration moves a processing order held by c to the next key
	// generation (Attempt+1, KeySince = now), after a consistent lookup
	// proved that no payment exists for the current key, or found a
	// PaymentIntent that still awaits a confirmation: paymentIntentID,
	// when not empty, is recorded as the order's; ApplyNewKeyGeneration
	// decides. ENOTFOUND; ESTATE unless processing with attempt equal to
	// from and held by c.
	NewKeyGeneration(ctx context.Context, c Claim, from int, paymentIntentID string, now time.Time) (*PaymentOrder, error)
	// Settle applies s as ApplySettlement decides, with its effect and the
	// history, in one transaction, and returns the order as it now is; a
	// zero s.At means now. ENOTFOUND; ESTATE (with the unchanged order)
	// when the move is not allowed, or when s was made under a claim that
	// no longer holds the order: then the late result is recorded as a
	// history line, and nothing else changes.
	Settle(ctx context.Context, s Settlement) (*PaymentOrder, error)
	// Reverse records money the provider took back from an order, total
	// being the cumulative amount refunded (or disputed) so far, as
	// ApplyReversal decides, with its effect and a history line in one
	// transaction. Replays and out-of-order reports change nothing.
	// ENOTFOUND; ESTATE (with the unchanged order) when the report changes
	// nothing; EINVALID for an unknown kind.
	Reverse(ctx context.Context, orderID string, kind Reversal, total int64, at time.Time) (*PaymentOrder, error)
	// ActionExpired returns up to n orders in requires_action whose action
	// began strictly before before (one that began at before itself has
	// not expired yet), oldest action first and, for actions that began on
	// the same instant, in line order (by seq): when more than n have
	// expired, the n returned are the head of that order. n <= 0 returns
	// none, and no error. An order in any other state (settled, canceled,
	// being charged) is never returned, whatever its action_since.
	ActionExpired(ctx context.Context, before time.Time, n int) ([]*PaymentOrder, error)
	// CancelDonation cancels a donation still waiting (accepted), as
	// ApplyCancel decides for its order, and returns the donation as it
	// now is (as it was, with ESTATE). ENOTFOUND; ESTATE in any other
	// status.
	CancelDonation(ctx context.Context, id string, now time.Time) (*Donation, error)
	// ReplacePaymentMethod puts a failed donation back in line, at its old
	// place, with a new payment method and a new key generation, as
	// ApplyPaymentMethod decides for its order. ENOTFOUND; ESTATE unless
	// failed.
	ReplacePaymentMethod(ctx context.Context, id, paymentMethod string, now time.Time) (*Donation, error)
}

// Budgets shares the provider's rate limit between nodes.
type Budgets interface {
	// TakeBudget takes permits from a provider budget shared by every
	// node, applying BudgetState.Take under a lock.
	TakeBudget(ctx context.Context, r BudgetRequest) (BudgetGrant, error)
}

// Settings keeps run-time settings and secrets shared by every node.
type Settings interface {
	// Setting returns a run-time setting shared by every node and when it
	// was set. ENOTFOUND when it was never set.
	Setting(ctx context.Context, name string) (string, time.Time, error)
	// SetSetting sets a run-time setting for every node.
	SetSetting(ctx context.Context, name, value string, now time.Time) error
	// Secret returns the named secret shared by every node, creating 32
	// random bytes on first use.
	Secret(ctx context.Context, name string) ([]byte, error)
}

// CardBlocks keeps the card fingerprints refused after card testing.
type CardBlocks interface {
	// BlockFingerprint refuses a card fingerprint until until (a later
	// block extends it).
	BlockFingerprint(ctx context.Context, fingerprint string, now, until time.Time) error
	// FingerprintBlocked reports whether a fingerprint is refused at now.
	FingerprintBlocked(ctx context.Context, fingerprint string, now time.Time) (bool, error)
	// FingerprintsBlockedSince counts the fingerprints blocked at or after
	// since (a sign of card testing under way).
	FingerprintsBlockedSince(ctx context.Context, since time.Time) (int, error)
}

// Store keeps campaigns, donations, their payment orders and totals. The
// accepted donation's order IS the queue: nothing acknowledged lives only
// in memory.
type Store interface {
	Campaigns
	Intakes
	Ledger
	Line
	Budgets
	Settings
	CardBlocks
	// Ping checks that the store answers and takes writes (a node whose
	// every commit fails must not be ready): it makes one small write.
	// Readiness checks call it, not request paths.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// DonorTotal is one donor's succeeded gifts in a currency over a period,
// donors being told apart by their email address (trimmed, lower case).
type DonorTotal struct {
	Email string
	// Name and Declaration are from the donor's latest gift that had
	// them.
	Name        string
	Declaration *Declaration
	Count       int64
	// Amount is what the gifts brought in: their amounts less refunds and
	// disputes.
	Amount int64
	First  time.Time
	Last   time.Time
}

// Reports reads settled gifts for the charity's tax-relief claims. The
// embedded and the PostgreSQL store both implement it.
type Reports interface {
	// GiftAidDonations returns a campaign's succeeded donations declared
	// for UK Gift Aid and not refunded or disputed in any part, oldest
	// first. ENOTFOUND for an unknown campaign.
	GiftAidDonations(ctx context.Context, campaignID string) ([]*Donation, error)
	// DonorTotals returns, for every donor, the succeeded donations in
	// currency created in [from, to) across all campaigns, with what they
	// brought in; donors in order of email.
	DonorTotals(ctx context.Context, currency string, from, to time.Time) ([]DonorTotal, error)
}
