package stripe

import (
	"context"

	"github.com/stripe/stripe-go/v85"
)

// CardFingerprint implements floodgate.Provider: it retrieves the
// PaymentMethod and returns its card's fingerprint ("" for a payment
// method without a card).
func (c *Client) CardFingerprint(ctx context.Context, paymentMethodID string) (string, error) {
	ctx, x := record(ctx)
	pm, err := c.api.V1PaymentMethods.Retrieve(ctx, paymentMethodID, &stripe.PaymentMethodRetrieveParams{})
	if err != nil {
		return "", c.fail(ctx, x, err)
	}
	if pm.Card == nil {
		return "", nil
	}
	return pm.Card.Fingerprint, nil
}
