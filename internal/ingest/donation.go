package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/floodgate/floodgate"
)

// MaxBody is the largest request body floodgate reads (16 KiB).
const MaxBody = 16 << 10

// DonationRequest is the body of POST /v1/campaigns/{id}/donations.
type DonationRequest struct {
	Amount        int64        `json:"amount"`
	Currency      string       `json:"currency"`
	Email         string       `json:"email"`
	Name          string       `json:"name"`
	PaymentMethod string       `json:"payment_method"`
	Anonymous     bool         `json:"anonymous"`
	Message       string       `json:"message"`
	Declaration   *Declaration `json:"declaration"`
}

// Declaration decodes a tax-relief declaration strictly, naming a bad
// field by its full path (declaration.postcode).
type Declaration floodgate.Declaration

// UnmarshalJSON implements json.Unmarshaler.
func (d *Declaration) UnmarshalJSON(b []byte) error {
	type plain Declaration // without this method
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode((*plain)(d)); err != nil {
		e := jsonError(err).(*floodgate.Error)
		for i, f := range e.Fields {
			if f.Field == "body" {
				e.Fields[i].Field = "declaration"
			} else {
				e.Fields[i].Field = "declaration." + f.Field
			}
			e.Message = e.Fields[0].Field + ": " + e.Fields[0].Message
		}
		return e
	}
	return nil
}

// DecodeDonation parses a donation body strictly: valid UTF-8, one JSON
// object, no unknown fields, the right type for every field. Its errors are
// EINVALID naming the field, or ETOOLARGE.
func DecodeDonation(body []byte) (*DonationRequest, error) {
	var r DonationRequest
	if err := DecodeStrict(body, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// DecodeStrict decodes one JSON object from body into v with the contract's
// rules, and turns every failure into a client error naming the field.
func DecodeStrict(body []byte, v any) error {
	if len(body) > MaxBody {
		return floodgate.Errorf(floodgate.ETOOLARGE, "The body is larger than %d bytes.", MaxBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return floodgate.Invalid("body", "is empty; a JSON object is required")
	}
	if !utf8.Valid(body) {
		return floodgate.Invalid("body", "must be valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return floodgate.Invalid("body", "must hold exactly one JSON object")
	}
	return checkMembers(body, shapeOf(reflect.TypeOf(v)))
}

// jsonError names the field behind an encoding/json error without echoing
// the library's wording of Go types.
func jsonError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		own *floodgate.Error
	)
	switch {
	case errors.As(err, &own):
		return own
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return floodgate.Invalid("body", "is not well-formed JSON")
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return floodgate.Invalid("body", "must be a JSON object")
		}
		return floodgate.Invalid(field, "must be %s", jsonKind(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return floodgate.Invalid(name, "is not a known field")
	}
	return floodgate.Invalid("body", "is not a valid request")
}

func jsonKind(k string) string {
	switch k {
	case "int64", "int", "int32", "uint32", "uint64":
		return "an integer"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "an array"
	case "struct", "ptr", "map":
		return "an object"
	}
	return "of another type"
}

var ukPostcodeRE = regexp.MustCompile(`^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$`)

// CheckOpen returns ECAMPAIGNCLOSED unless c takes donations at now.
func CheckOpen(c *floodgate.Campaign, now time.Time) error {
	switch c.State(now) {
	case floodgate.CampaignClosed:
		return floodgate.Errorf(floodgate.ECAMPAIGNCLOSED, "Campaign %q is closed.", c.ID)
	case floodgate.CampaignScheduled:
		return floodgate.Errorf(floodgate.ECAMPAIGNCLOSED, "Campaign %q is not open yet; it opens at %s.", c.ID, c.OpensAt.Format(time.RFC3339))
	}
	return nil
}

// donationKind is the donation's part of the accept path: a donation is
// held by its campaign, built from a DonationRequest, taken while the
// campaign is open, and limited by its donor's email.
func donationKind(s *Service) *kind[*floodgate.Campaign, *floodgate.Donation] {
	return &kind[*floodgate.Campaign, *floodgate.Donation]{
		s:       s,
		holders: s.campaigns,
		build:   buildDonation,
		closed:  CheckOpen,
		email:   func(d *floodgate.Donation) string { return d.Email },
		byKey: func(ctx context.Context, k floodgate.IntakeKey) (*floodgate.Donation, error) {
			return s.store.DonationByKey(ctx, k.Scope, k.Key)
		},
	}
}

// buildDonation decodes and validates a donation's body for campaign c.
func buildDonation(c *floodgate.Campaign, body []byte, key, clientAddr string) (*floodgate.Donation, error) {
	req, err := DecodeDonation(body)
	if err != nil {
		return nil, err
	}
	d, err := req.Validate(c)
	if err != nil {
		return nil, err
	}
	d.IdempotencyKey, d.ClientAddr = key, clientAddr
	return d, nil
}

// Validate checks the request's fields against its campaign and returns
// the donation to store; every broken field is named at once. Whether the
// campaign is open is CheckOpen's question.
func (r *DonationRequest) Validate(c *floodgate.Campaign) (*floodgate.Donation, error) {
	var v floodgate.Validation
	currency := strings.ToLower(strings.TrimSpace(r.Currency))
	switch {
	case currency == "":
		v.Add("currency", "is required")
	case currency != c.Currency:
		v.Add("currency", "must be %s, the campaign's currency", c.Currency)
	}
	switch {
	case r.Amount == 0:
		v.Add("amount", "is required (an integer in the currency's minor unit)")
	case r.Amount < c.MinAmount:
		v.Add("amount", "must be at least %d", c.MinAmount)
	case r.Amount > c.MaxAmount:
		v.Add("amount", "must be at most %d", c.MaxAmount)
	}
	email := strings.TrimSpace(r.Email)
	if msg := floodgate.CheckEmail(email); msg != "" {
		v.Add("email", "%s", msg)
	}
	name := strings.TrimSpace(r.Name)
	if msg := floodgate.CheckText(name, floodgate.MaxNameLen, false); msg != "" {
		v.Add("name", "%s", msg)
	}
	if msg := floodgate.CheckPaymentMethod(r.PaymentMethod); msg != "" {
		v.Add("payment_method", "%s", msg)
	}
	if msg := floodgate.CheckText(r.Message, floodgate.MaxMessageLen, true); msg != "" {
		v.Add("message", "%s", msg)
	}
	decl := r.validateDeclaration(c, &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	d := &floodgate.Donation{
		CampaignID:    c.ID,
		Amount:        r.Amount,
		Currency:      currency,
		Email:         email,
		Name:          name,
		PaymentMethod: r.PaymentMethod,
		Anonymous:     r.Anonymous,
		Message:       r.Message,
		Declaration:   decl,
	}
	d.RequestHash = requestHash(d)
	return d, nil
}

func (r *DonationRequest) validateDeclaration(c *floodgate.Campaign, v *floodgate.Validation) *floodgate.Declaration {
	if r.Declaration == nil {
		return nil
	}
	d := floodgate.Declaration(*r.Declaration)
	for _, f := range []*string{&d.Scheme, &d.TextVersion, &d.FirstName, &d.LastName, &d.House, &d.Postcode} {
		*f = strings.TrimSpace(*f)
	}
	switch {
	case d.Scheme == "":
		v.Add("declaration.scheme", "is required")
	case d.Scheme != floodgate.SchemeIE && d.Scheme != floodgate.SchemeUKGiftAid:
		v.Add("declaration.scheme", "must be ie or uk_gift_aid")
	case !c.Offers(d.Scheme):
		v.Add("declaration.scheme", "%s is not offered by this campaign", d.Scheme)
	}
	required := func(field, val string, max int) {
		if val == "" {
			v.Add(field, "is required for a %s declaration", d.Scheme)
		} else if msg := floodgate.CheckText(val, max, false); msg != "" {
			v.Add(field, "%s", msg)
		}
	}
	optional := func(field, val string, max int) {
		if msg := floodgate.CheckText(val, max, false); msg != "" {
			v.Add(field, "%s", msg)
		}
	}
	required("declaration.text_version", d.TextVersion, floodgate.MaxTextVersion)
	required("declaration.first_name", d.FirstName, floodgate.MaxDeclField)
	required("declaration.last_name", d.LastName, floodgate.MaxDeclField)
	if d.Scheme == floodgate.SchemeUKGiftAid {
		// HMRC needs the house name or number and the postcode.
		required("declaration.house", d.House, floodgate.MaxDeclField)
		required("declaration.postcode", d.Postcode, floodgate.MaxPostcodeLen)
		if d.Postcode != "" && !ukPostcodeRE.MatchString(strings.ToUpper(d.Postcode)) {
			v.Add("declaration.postcode", "must be a UK postcode like BT1 1AA")
		}
		d.Postcode = strings.ToUpper(d.Postcode)
	} else {
		optional("declaration.house", d.House, floodgate.MaxDeclField)
		optional("declaration.postcode", d.Postcode, floodgate.MaxPostcodeLen)
	}
	return &d
}

// requestHash is the SHA-256 of the donation's normalised request: two
// bodies that differ only in spacing, field order or letter case of the
// currency are the same request.
func requestHash(d *floodgate.Donation) []byte {
	canon := struct {
		Campaign      string                 `json:"c"`
		Amount        int64                  `json:"a"`
		Currency      string                 `json:"cu"`
		Email         string                 `json:"e"`
		Name          string                 `json:"n"`
		PaymentMethod string                 `json:"pm"`
		Anonymous     bool                   `json:"an"`
		Message       string                 `json:"m"`
		Declaration   *floodgate.Declaration `json:"d"`
	}{d.CampaignID, d.Amount, d.Currency, d.Email, d.Name, d.PaymentMethod, d.Anonymous, d.Message, d.Declaration}
	b, _ := json.Marshal(canon) // strings, ints and bools always marshal
	h := sha256.Sum256(b)
	return h[:]
}
