package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Card is a test payment method and its share of the donations.
type Card struct {
	PaymentMethod string  `json:"payment_method"`
	Weight        float64 `json:"weight"`
}

// DefaultCards is the mix a night of real donors resembles: most cards
// succeed, a few are declined.
const DefaultCards = "visa=90,mastercard=7,chargeDeclined=3"

// ParseCards reads a card mix: comma-separated names with optional
// weights ("visa", "visa=90,chargeDeclined=10"). A name is a Stripe test
// card (visa, mastercard, chargeDeclined, authenticationRequired, ...;
// "declined" is short for chargeDeclined) or a full payment method id
// (pm_..., tok_...). Without a weight a card weighs 1.
func ParseCards(s string) ([]Card, error) {
	var cards []Card
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, hasW := strings.Cut(part, "=")
		c := Card{PaymentMethod: strings.TrimSpace(name), Weight: 1}
		if hasW {
			v, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
				return nil, fmt.Errorf("card %q: weight %q is not a number >= 0", name, w)
			}
			c.Weight = v
		}
		switch {
		case c.PaymentMethod == "":
			return nil, fmt.Errorf("card %q: no name", part)
		case c.PaymentMethod == "declined":
			c.PaymentMethod = "pm_card_chargeDeclined"
		case strings.HasPrefix(c.PaymentMethod, "pm_"), strings.HasPrefix(c.PaymentMethod, "tok_"):
		default:
			c.PaymentMethod = "pm_card_" + c.PaymentMethod
		}
		cards = append(cards, c)
	}
	var total float64
	for _, c := range cards {
		total += c.Weight
	}
	if len(cards) == 0 || total <= 0 {
		return nil, fmt.Errorf("no card with a weight above 0 in %q", s)
	}
	return cards, nil
}

// campaign is what the load needs to know of the campaign it donates to.
type campaign struct {
	ID               string  `json:"id"`
	Currency         string  `json:"currency"`
	MinAmount        int64   `json:"min_amount"`
	MaxAmount        int64   `json:"max_amount"`
	SuggestedAmounts []int64 `json:"suggested_amounts"`
	State            string  `json:"state"`
}

// fetchCampaign reads the campaign once before the run, as the donation
// page does, to give amounts the campaign accepts.
func fetchCampaign(ctx context.Context, hc *http.Client, base, id string) (campaign, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/campaigns/"+url.PathEscape(id), nil)
	if err != nil {
		return campaign{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return campaign{}, fmt.Errorf("cannot read campaign %s at %s: %s", id, base, netKind(errText(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return campaign{}, fmt.Errorf("campaign %s: %s", id, netKind(errText(err)))
	}
	if resp.StatusCode != http.StatusOK {
		return campaign{}, fmt.Errorf("campaign %s at %s: answered %d %s", id, base, resp.StatusCode, problemType(body))
	}
	var c campaign
	if err := json.Unmarshal(body, &c); err != nil || c.Currency == "" {
		return campaign{}, fmt.Errorf("campaign %s at %s: not a floodgate campaign", id, base)
	}
	return c, nil
}

// donors makes donation requests: each one a new donor with a unique
// idempotency key and email, an amount around the campaign's suggestions
// and a card from the mix. It is safe for concurrent use (vegeta's
// workers call it at once).
type donors struct {
	camp  campaign
	run   string // unique per run, so that a second run never replays the first
	cards []Card
	total float64
	n     atomic.Uint64

	mu  sync.Mutex
	rng *mrand.Rand
}

func newDonors(camp campaign, cards []Card, seed uint64) *donors {
	var b [6]byte
	_, _ = rand.Read(b[:])
	d := &donors{camp: camp, run: hex.EncodeToString(b[:]), cards: cards,
		rng: mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for _, c := range cards {
		d.total += c.Weight
	}
	return d
}

// donationBody is the contract's donation request.
type donationBody struct {
	Amount        int64  `json:"amount"`
	Currency      string `json:"currency"`
	Email         string `json:"email"`
	Name          string `json:"name"`
	PaymentMethod string `json:"payment_method"`
	Anonymous     bool   `json:"anonymous"`
	Message       string `json:"message,omitempty"`
}

var donorNames = []string{"Aoife", "Seán", "Niamh", "Ciarán", "Mary", "John", "Priya", "Wei", "Fatima", "Tomás",
	"Siobhán", "Oisín", "Grace", "Declan", "Ana", "Kofi"}

var donorMessages = []string{"Go on!", "For Mam.", "Keep it up, lads", "Delighted to help", "In memory of Dad",
	"Fair play to you all", "From all at number 12"}

// next returns the idempotency key and the body of a new donation.
func (d *donors) next() (key string, body []byte) {
	n := d.n.Add(1)
	d.mu.Lock()
	b := donationBody{
		Amount:        d.amount(),
		Currency:      d.camp.Currency,
		Email:         fmt.Sprintf("load-%s-%d@example.org", d.run, n),
		Name:          donorNames[d.rng.IntN(len(donorNames))],
		PaymentMethod: d.card(),
		Anonymous:     d.rng.IntN(10) == 0,
	}
	if d.rng.IntN(10) < 3 {
		b.Message = donorMessages[d.rng.IntN(len(donorMessages))]
	}
	d.mu.Unlock()
	body, _ = json.Marshal(b) // plain struct: cannot fail
	return fmt.Sprintf("load-%s-%d", d.run, n), body
}

// amount picks one of the suggested amounts seven times in ten, as most
// donors press a button; otherwise a round amount within a factor of two
// of one. Every amount is within the campaign's bounds. The caller holds
// d.mu.
func (d *donors) amount() int64 {
	c := d.camp
	lo, hi := c.MinAmount, c.MaxAmount
	if hi < lo {
		hi = math.MaxInt64
	}
	clamp := func(a int64) int64 { return min(max(a, lo), hi) }
	var base int64
	if len(c.SuggestedAmounts) > 0 {
		base = c.SuggestedAmounts[d.rng.IntN(len(c.SuggestedAmounts))]
		if d.rng.IntN(10) < 7 {
			return clamp(base)
		}
	} else {
		base = max(lo, 100) * 5
	}
	f := math.Exp((d.rng.Float64()*2 - 1) * math.Ln2)
	a := int64(math.Round(float64(base)*f/100)) * 100
	return clamp(max(a, 100))
}

// card picks a payment method by weight. The caller holds d.mu.
func (d *donors) card() string {
	x := d.rng.Float64() * d.total
	last := ""
	for _, c := range d.cards {
		if c.Weight <= 0 {
			continue
		}
		if x < c.Weight {
			return c.PaymentMethod
		}
		x -= c.Weight
		last = c.PaymentMethod
	}
	// Rounding may leave x a hair above the last weight: that card.
	return last
}
