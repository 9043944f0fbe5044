package floodgate

import (
	"regexp"
	"slices"
	"time"
)

// Tax relief schemes a campaign may offer and a donation may declare.
const (
	// SchemeIE is Ireland's scheme for donations: a donor whose gifts reach
	// EUR 250 in a year is asked to sign a CHY3/CHY4 so the charity can claim.
	SchemeIE = "ie"
	// SchemeUKGiftAid is the UK's Gift Aid: a declared UK taxpayer's gift is
	// worth 25% more to the charity.
	SchemeUKGiftAid = "uk_gift_aid"
)

// Campaign is one donation drive.
type Campaign struct {
	ID               string
	Name             string
	Currency         string
	Goal             int64 // 0: no goal
	MinAmount        int64
	MaxAmount        int64
	OpensAt          time.Time
	ClosesAt         *time.Time // nil: open until closed
	SuggestedAmounts []int64
	TaxSchemes       []string
	CreatedAt        time.Time
	UpdatedAt        time.Time
}

// Campaign states, derived from the clock.
const (
	CampaignScheduled = "scheduled"
	CampaignOpen      = "open"
	CampaignClosed    = "closed"
)

// State says whether the campaign takes donations at now.
func (c *Campaign) State(now time.Time) string {
	switch {
	case now.Before(c.OpensAt):
		return CampaignScheduled
	case c.ClosesAt != nil && !now.Before(*c.ClosesAt):
		return CampaignClosed
	}
	return CampaignOpen
}

// Offers reports whether the campaign lets donors declare scheme.
func (c *Campaign) Offers(scheme string) bool { return slices.Contains(c.TaxSchemes, scheme) }

// CampaignUpdate holds the fields PATCH may change; nil leaves a field as
// it is. A ClosesAt in the past closes the campaign at once.
type CampaignUpdate struct {
	Name             *string
	Goal             *int64
	ClosesAt         *time.Time
	SuggestedAmounts *[]int64
}

// Apply returns c with u applied at now; it does not validate. A closed
// campaign stays closed: closing it again keeps the time it closed, and a
// closes_at after now is refused (donors were told it had ended, and a
// draw may have been made).
func (u CampaignUpdate) Apply(c Campaign, now time.Time) (Campaign, error) {
	if u.Name != nil {
		c.Name = *u.Name
	}
	if u.Goal != nil {
		c.Goal = *u.Goal
	}
	if u.ClosesAt != nil {
		switch {
		case c.State(now) != CampaignClosed:
			t := *u.ClosesAt
			c.ClosesAt = &t
		case u.ClosesAt.After(now):
			return c, Errorf(ESTATE, "Campaign %q closed at %s; it cannot reopen.", c.ID, c.ClosesAt.UTC().Format(time.RFC3339))
		}
	}
	if u.SuggestedAmounts != nil {
		c.SuggestedAmounts = slices.Clone(*u.SuggestedAmounts)
	}
	return c, nil
}

var campaignIDRE = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)

// ValidCampaignID reports whether id has the contract's form.
func ValidCampaignID(id string) bool { return campaignIDRE.MatchString(id) }

// Limits on a campaign's lists.
const (
	MaxSuggestedAmounts = 12
	// DefaultMaxAmountUnits is the default max_amount in major units.
	DefaultMaxAmountUnits = 100_000
)

// SetDefaults fills what a creator may leave out: the minimum is the
// provider's for the currency, the maximum 100,000 major units, and the
// campaign opens at once.
func (c *Campaign) SetDefaults(now time.Time) {
	cur, ok := LookupCurrency(c.Currency)
	if !ok {
		return
	}
	if c.MinAmount == 0 {
		c.MinAmount = cur.MinCharge
	}
	if c.MaxAmount == 0 {
		m := int64(DefaultMaxAmountUnits)
		for range cur.Exponent {
			m *= 10
		}
		c.MaxAmount = m
	}
	if c.OpensAt.IsZero() {
		c.OpensAt = now
	}
}

// ValidateNew checks a campaign about to be created: every rule of
// Validate, and a closing time after the opening time.
func (c *Campaign) ValidateNew() error { return c.validate(true) }

// Validate checks every rule of a campaign and names each broken field. An
// existing campaign may be given a closing time in the past: that closes it.
func (c *Campaign) Validate() error { return c.validate(false) }

func (c *Campaign) validate(creating bool) error {
	var v Validation
	if !ValidCampaignID(c.ID) {
		v.Add("id", "must match [a-z0-9-]{1,64}")
	}
	if c.Name == "" {
		v.Add("name", "is required")
	} else if msg := CheckText(c.Name, MaxNameLen, false); msg != "" {
		v.Add("name", "%s", msg)
	}
	cur, ok := LookupCurrency(c.Currency)
	if !ok {
		v.Add("currency", "must be one of %v", Currencies())
	}
	if c.Goal < 0 {
		v.Add("goal", "must not be negative")
	}
	if ok && c.MinAmount < cur.MinCharge {
		v.Add("min_amount", "must be at least %d, the provider's minimum for %s", cur.MinCharge, c.Currency)
	}
	if c.MaxAmount < c.MinAmount {
		v.Add("max_amount", "must be at least min_amount")
	}
	if c.MaxAmount > 99_999_999 {
		v.Add("max_amount", "must be at most 99999999, the provider's largest charge")
	}
	if creating && c.ClosesAt != nil && !c.ClosesAt.After(c.OpensAt) {
		v.Add("closes_at", "must be after opens_at")
	}
	if len(c.SuggestedAmounts) > MaxSuggestedAmounts {
		v.Add("suggested_amounts", "must have at most %d amounts", MaxSuggestedAmounts)
	}
	for _, a := range c.SuggestedAmounts {
		if a < c.MinAmount || a > c.MaxAmount {
			v.Add("suggested_amounts", "%d is outside min_amount..max_amount", a)
			break
		}
	}
	seen := map[string]bool{}
	for _, s := range c.TaxSchemes {
		if s != SchemeIE && s != SchemeUKGiftAid {
			v.Add("tax_schemes", "%q is not one of ie, uk_gift_aid", s)
		} else if seen[s] {
			v.Add("tax_schemes", "%q is listed twice", s)
		}
		seen[s] = true
	}
	return v.Err()
}

// Totals are a campaign's live sums. Raised and Donations count succeeded
// payments (less refunds and disputes); Pending counts gifts accepted and
// not yet settled; Pledged = Raised + Pending. Failed and canceled gifts
// never count.
type Totals struct {
	Campaign  string
	Currency  string
	Raised    int64
	Donations int64
	Pending   int64
	// PendingCount is the number of gifts behind Pending.
	PendingCount int64
	// Waiting is the number of gifts still in line (status accepted).
	Waiting   int64
	UpdatedAt time.Time
}

// Pledged is Raised + Pending.
func (t Totals) Pledged() int64 { return t.Raised + t.Pending }
