package floodgate

// IntakeKind names a kind of intake.
type IntakeKind string

// The kinds of intake.
const (
	KindDonation IntakeKind = "donation"
)

// IntakeKey is an idempotency key where it is held: Scope is the campaign
// of a donation. Two intakes of one kind under the same IntakeKey are one
// request sent twice (Replay says which answer the second one gets).
type IntakeKey struct {
	Scope string
	Key   string
}

// Intake is anything accepted durably in a group commit: today a
// *Donation. One batcher and one transaction (one fsync) per batch serve
// every kind: Store.Accept takes a batch of any kinds, each engine stores
// each kind its own way inside the batch's one transaction, and refuses an
// item alone (AcceptResult.Err) without failing the rest.
//
// The kinds are this package's types (the interface has unexported
// methods), so every engine can know them all.
type Intake interface {
	// Kind says which kind the intake is.
	Kind() IntakeKind
	// IntakeKey is the idempotency key the intake is held under.
	IntakeKey() IntakeKey
	// IntakeID is the stored intake's id; empty until it is accepted.
	IntakeID() string
	// requestSum is the SHA-256 of the request's canonical form: the same
	// key with another sum is another request.
	requestSum() []byte
	// clone returns a copy of the intake for one answer: two answers must
	// not share an intake one of them could change under the other.
	clone() Intake
}

// Kind implements Intake.
func (d *Donation) Kind() IntakeKind { return KindDonation }

// IntakeKey implements Intake: a donation's key is held in its campaign.
func (d *Donation) IntakeKey() IntakeKey {
	return IntakeKey{Scope: d.CampaignID, Key: d.IdempotencyKey}
}

// IntakeID implements Intake.
func (d *Donation) IntakeID() string { return d.ID }

func (d *Donation) requestSum() []byte { return d.RequestHash }

func (d *Donation) clone() Intake {
	c := *d
	return &c
}

// Part is the items of one kind in a batch of intakes, Items[i] standing at
// At[i] in the batch: an engine stores each kind's part its own way and
// answers each item in its place.
type Part[T Intake] struct {
	Items []T
	At    []int
}

// PartOf picks the items of type T out of a batch.
func PartOf[T Intake](items []Intake) Part[T] {
	p := Part[T]{Items: make([]T, 0, len(items)), At: make([]int, 0, len(items))}
	for i, it := range items {
		if v, ok := it.(T); ok {
			p.Items = append(p.Items, v)
			p.At = append(p.At, i)
		}
	}
	return p
}

// Answer puts res, one result per item of the part in the part's order,
// in their places in results, the batch's results.
func (p Part[T]) Answer(results, res []AcceptResult) {
	for i, r := range res {
		results[p.At[i]] = r
	}
}

// RefuseUnanswered refuses every item of a batch that no kind's part
// answered (neither stored nor refused): an engine that does not store a
// kind refuses its items alone, as an internal error, and the batch still
// commits.
func RefuseUnanswered(items []Intake, results []AcceptResult) {
	for i, r := range results {
		if r.Intake == nil && r.Err == nil {
			results[i].Err = Errorf(EINTERNAL, "This store does not keep a %s.", items[i].Kind())
		}
	}
}
