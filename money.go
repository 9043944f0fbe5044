package floodgate

import (
	"fmt"
	"slices"
	"strings"
)

// Money is always an int64 count of the currency's minor unit (cents for
// EUR); floats never carry money anywhere in floodgate.

// CurrencyInfo describes one currency floodgate accepts.
type CurrencyInfo struct {
	// Code is ISO 4217 in lower case, as the provider writes it.
	Code string
	// Exponent is the number of decimal places of the minor unit.
	Exponent int
	// MinCharge is the provider's smallest chargeable amount in minor
	// units (Stripe's published minimums).
	MinCharge int64
}

var currencies = map[string]CurrencyInfo{
	"aud": {"aud", 2, 50},
	"cad": {"cad", 2, 50},
	"chf": {"chf", 2, 50},
	"czk": {"czk", 2, 1500},
	"dkk": {"dkk", 2, 250},
	"eur": {"eur", 2, 50},
	"gbp": {"gbp", 2, 30},
	"hkd": {"hkd", 2, 400},
	"huf": {"huf", 2, 17500},
	"jpy": {"jpy", 0, 50},
	"nok": {"nok", 2, 300},
	"nzd": {"nzd", 2, 50},
	"pln": {"pln", 2, 200},
	"sek": {"sek", 2, 300},
	"sgd": {"sgd", 2, 50},
	"usd": {"usd", 2, 50},
}

// LookupCurrency returns what floodgate knows of a currency code; the code
// must already be lower case.
func LookupCurrency(code string) (CurrencyInfo, bool) {
	c, ok := currencies[code]
	return c, ok
}

// Currencies lists the supported currency codes, sorted.
func Currencies() []string {
	out := make([]string, 0, len(currencies))
	for k := range currencies {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// FormatAmount renders an amount for people ("EUR 25.00"); it is for pages
// and logs, never for arithmetic.
func FormatAmount(amount int64, currency string) string {
	c, ok := currencies[currency]
	if !ok || c.Exponent == 0 {
		return fmt.Sprintf("%s %d", strings.ToUpper(currency), amount)
	}
	sign := ""
	if amount < 0 {
		sign, amount = "-", -amount
	}
	div := int64(1)
	for range c.Exponent {
		div *= 10
	}
	return fmt.Sprintf("%s %s%d.%0*d", strings.ToUpper(currency), sign, amount/div, c.Exponent, amount%div)
}
