package sandbox

import (
	"net/http/httptest"
	"testing"

	"github.com/floodgate/floodgate/internal/stripe/stripetest"
)

// TestContract holds the sandbox to Stripe's behaviour: the suite that
// internal/stripe's TestContractStripe runs against Stripe's own test mode
// (when STRIPE_TEST_SECRET_KEY is set) runs here, always, against a
// sandbox configured like a test-mode account: one secret key, real time,
// Stripe's test-mode rate limit. The suite paces itself under that limit,
// as it must on Stripe.
func TestContract(t *testing.T) {
	const key = "sk_test_floodgate_contract"
	s, err := New(Options{APIKeys: []string{key}, RateLimit: DefaultRateLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	stripetest.Run(t, stripetest.Target{APIBase: ts.URL, SecretKey: key, Rate: 20})
	if l := s.Ledger(); len(l.ChargedTwice) != 0 {
		t.Errorf("charged twice: %v", l.ChargedTwice)
	}
}
