package stripe_test

import (
	"os"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/internal/stripe/stripetest"
)

// stripeTestKey names the variable holding a Stripe test-mode secret key.
const stripeTestKey = "STRIPE_TEST_SECRET_KEY"

// TestContractStripe runs the contract suite against Stripe's own test
// mode, the behaviour the sandbox is held to (internal/sandbox's
// TestContract runs the same suite against the sandbox, always). It needs
// the internet and a test-mode key; it creates a few test PaymentIntents
// (metadata.contract_run names the run) and cancels those it leaves open.
func TestContractStripe(t *testing.T) {
	key := strings.TrimSpace(os.Getenv(stripeTestKey))
	if key == "" {
		t.Skipf("%s is not set: the contract runs against the sandbox only (internal/sandbox TestContract); set it to a Stripe test-mode secret key (sk_test_...) to run it against Stripe", stripeTestKey)
	}
	if !strings.HasPrefix(key, "sk_test_") && !strings.HasPrefix(key, "rk_test_") {
		t.Fatalf("%s must be a test-mode key (sk_test_... or rk_test_...); refusing to run the contract in live mode", stripeTestKey)
	}
	// Stripe's test mode allows 25 requests a second per account; pace
	// well under it so that other users of the account are not starved.
	stripetest.Run(t, stripetest.Target{SecretKey: key, Rate: 10})
}
