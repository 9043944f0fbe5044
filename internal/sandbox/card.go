package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"net/http"
)

// outcome is what a test card does when a PaymentIntent is confirmed with
// it.
type outcome int

const (
	succeed outcome = iota
	decline
	authenticate // 3-D Secure first, then the card's after-auth result
)

// declineInfo is the card error a declining card produces, with Stripe's
// codes and messages.
type declineInfo struct {
	code, declineCode, message, param string
}

// testCard is one of Stripe's test cards. Stripe documents each under a
// magic PaymentMethod id (pm_card_<name>) and a token (tok_<name>).
type testCard struct {
	name    string
	number  string
	brand   string
	funding string
	country string
	outcome outcome
	decline declineInfo
	// afterAuth, for a card that needs 3-D Secure, is the decline that
	// follows a completed authentication (nil: it succeeds).
	afterAuth *declineInfo
	// dispute makes a successful charge disputed at once, as Stripe's
	// createDispute card does.
	dispute bool
}

var (
	declined = declineInfo{"card_declined", "generic_decline", "Your card was declined.", ""}
	noFunds  = declineInfo{"card_declined", "insufficient_funds", "Your card has insufficient funds.", ""}
)

// testCards are the cards the sandbox knows, with Stripe's numbers and
// meanings (https://docs.stripe.com/testing).
var testCards = []*testCard{
	{name: "visa", number: "4242424242424242", brand: "visa", funding: "credit", country: "US"},
	{name: "visa_debit", number: "4000056655665556", brand: "visa", funding: "debit", country: "US"},
	{name: "mastercard", number: "5555555555554444", brand: "mastercard", funding: "credit", country: "US"},
	{name: "amex", number: "378282246310005", brand: "amex", funding: "credit", country: "US"},
	{name: "chargeDeclined", number: "4000000000000002", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declined},
	{name: "chargeDeclinedInsufficientFunds", number: "4000000000009995", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: noFunds},
	{name: "chargeDeclinedLostCard", number: "4000000000009987", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"card_declined", "lost_card", "Your card was declined.", ""}},
	{name: "chargeDeclinedStolenCard", number: "4000000000009979", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"card_declined", "stolen_card", "Your card was declined.", ""}},
	{name: "chargeDeclinedFraudulent", number: "4100000000000019", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"card_declined", "fraudulent", "Your card was declined.", ""}},
	{name: "chargeDeclinedExpiredCard", number: "4000000000000069", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"expired_card", "expired_card", "Your card has expired.", "exp_month"}},
	{name: "chargeDeclinedIncorrectCvc", number: "4000000000000127", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc"}},
	{name: "chargeDeclinedProcessingError", number: "4000000000000119", brand: "visa", funding: "credit", country: "US",
		outcome: decline, decline: declineInfo{"processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit.", ""}},
	{name: "authenticationRequired", number: "4000002760003184", brand: "visa", funding: "credit", country: "DE",
		outcome: authenticate},
	{name: "threeDSecure2Required", number: "4000000000003220", brand: "visa", funding: "credit", country: "US",
		outcome: authenticate},
	{name: "authenticationRequiredChargeDeclinedInsufficientFunds", number: "4000008260003178", brand: "visa", funding: "credit", country: "DE",
		outcome: authenticate, afterAuth: &noFunds},
	{name: "createDispute", number: "4000000000000259", brand: "visa", funding: "credit", country: "US",
		dispute: true},
}

var (
	cardsByPM     = map[string]*testCard{}
	cardsByToken  = map[string]*testCard{}
	cardsByNumber = map[string]*testCard{}
	cardsByName   = map[string]*testCard{}
)

func init() {
	for _, c := range testCards {
		cardsByPM["pm_card_"+c.name] = c
		cardsByToken["tok_"+c.name] = c
		cardsByNumber[c.number] = c
		cardsByName[c.name] = c
	}
}

func (c *testCard) last4() string { return c.number[len(c.number)-4:] }

// displayBrand is Stripe's card.display_brand for the brand.
func (c *testCard) displayBrand() string {
	if c.brand == "amex" {
		return "american_express"
	}
	return c.brand
}

// fingerprint is the card's stable fingerprint: the same card number gives
// the same value in every sandbox, across restarts, whatever PaymentMethod
// or token it came through, as Stripe's card.fingerprint does within an
// account. It is derived with a fixed key so that it reveals nothing else.
func (c *testCard) fingerprint() string {
	m := hmac.New(sha256.New, []byte("floodgate sandbox card fingerprint"))
	m.Write([]byte(c.number))
	return base62(m.Sum(nil), 16)
}

// declineError is the card_error a decline answers with: HTTP 402.
func (d declineInfo) declineError() *apiError {
	return &apiError{status: http.StatusPaymentRequired, Type: typeCard, Code: d.code, DeclineCode: d.declineCode,
		Message: d.message, Param: d.param}
}

const alphabet62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// base62 renders b as n base-62 digits (most significant first).
func base62(b []byte, n int) string {
	v := new(big.Int).SetBytes(b)
	base := big.NewInt(62)
	out := make([]byte, n)
	mod := new(big.Int)
	for i := n - 1; i >= 0; i-- {
		v.DivMod(v, base, mod)
		out[i] = alphabet62[mod.Int64()]
	}
	return string(out)
}

// newID returns prefix followed by n random base-62 characters, the shape
// of Stripe's ids. n = 24 carries about 142 bits, so ids and client secrets
// cannot be guessed.
func newID(prefix string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+).
	for i := range b {
		b[i] = alphabet62[int(b[i])%62]
	}
	return prefix + string(b)
}
