package floodgate

import (
	"math"
	"time"
)

// Budgets name the provider limits every node's dispatcher shares.
const (
	// BudgetPaymentIntents paces PaymentIntent creations and confirms.
	BudgetPaymentIntents = "payment_intents"
	// BudgetProvider paces every provider request.
	BudgetProvider = "provider"
)

// BudgetRequest asks a shared budget for send permits.
type BudgetRequest struct {
	Name string
	// Rate is the configured rate, per second: the most the budget ever
	// allows, all nodes together.
	Rate float64
	// Want is how many permits the caller would like now.
	Want int
	// Cut reports that the provider answered 429: the shared rate is
	// halved (at most once per cool-down, however many nodes saw it).
	Cut bool
	Now time.Time
}

// BudgetGrant is a budget's answer.
type BudgetGrant struct {
	// Granted permits, 0..Want. Each is one request the caller may send.
	Granted int
	// Rate is the budget's current shared rate, per second.
	Rate float64
}

// BudgetState is a shared token bucket as a store keeps it.
type BudgetState struct {
	Tokens    float64
	Rate      float64
	UpdatedAt time.Time
	CutAt     time.Time
}

// Budget cool-down and growth: after a cut the rate stays down for
// BudgetCooldown, then climbs back by a twentieth of the configured rate
// per second (additive increase, multiplicative decrease).
const (
	BudgetCooldown = 2 * time.Second
	budgetFloor    = 0.5
	// budgetBurst is how many seconds of the rate the bucket can hold: a
	// short burst, as a provider's own one-second windows allow.
	budgetBurst = 0.5
)

// Take applies a request to the bucket and returns the new state and the
// grant. It is a pure function: every store applies exactly this, in one
// transaction, so the nodes together never exceed the shared rate. Time
// going backwards (another node's clock) counts as no time.
func (st BudgetState) Take(r BudgetRequest) (BudgetState, BudgetGrant) {
	if st.Rate <= 0 || st.UpdatedAt.IsZero() {
		// A new budget: one permit at once, so that the first send of a
		// quiet night does not wait.
		st = BudgetState{Tokens: 1, Rate: r.Rate, UpdatedAt: r.Now}
	}
	st.Rate = math.Min(st.Rate, r.Rate) // the configured rate was lowered
	elapsed := math.Max(0, r.Now.Sub(st.UpdatedAt).Seconds())
	cooled := r.Now.Sub(st.CutAt) >= BudgetCooldown
	if cooled {
		st.Rate = math.Min(r.Rate, st.Rate+r.Rate/20*elapsed)
	}
	burst := math.Max(1, st.Rate*budgetBurst)
	st.Tokens = math.Min(burst, st.Tokens+st.Rate*elapsed)
	if r.Cut && cooled {
		st.Rate = math.Max(math.Min(budgetFloor, r.Rate), st.Rate/2)
		st.CutAt = r.Now
		st.Tokens = math.Min(st.Tokens, math.Max(1, st.Rate*budgetBurst))
	}
	g := BudgetGrant{Granted: int(math.Min(float64(r.Want), math.Floor(st.Tokens))), Rate: st.Rate}
	if g.Granted < 0 {
		g.Granted = 0
	}
	st.Tokens -= float64(g.Granted)
	if r.Now.After(st.UpdatedAt) {
		st.UpdatedAt = r.Now
	}
	return st, g
}
