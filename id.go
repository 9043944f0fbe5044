package floodgate

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"strings"
	"time"
)

// Id prefixes name the type of an id.
const (
	DonationIDPrefix = "don_"
	EntryIDPrefix    = "ent_"
	OrderIDPrefix    = "po_"
)

const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

// idLen is the length of an id after its prefix: 10 characters of time,
// 26 of randomness.
const idLen = 36

// NewID returns prefix followed by the current time in milliseconds (10
// base32 characters, Crockford's alphabet) and 128 random bits from the
// operating system's CSPRNG (26 characters): opaque, unguessable, safe in
// URLs. The time prefix makes ids of one store sort by creation, so a batch
// of new ids lands at the end of the id index instead of dirtying pages
// all over it; that keeps the accept path's cost flat however many
// donations the store holds.
func NewID(prefix string) string {
	var b [22]byte // 6 bytes of time, 16 random; 2 spare for base32's 5-byte groups
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint64(b[:8], ms<<16) // the top 48 bits of the first 8 bytes
	_, _ = rand.Read(b[6:22])                 // crypto/rand.Read never fails (Go 1.24+).
	enc := idEncoding.EncodeToString(b[:])    // 36 characters for 22 bytes
	return prefix + enc[:idLen]
}

// ValidID reports whether s looks like an id made by NewID with prefix; it
// lets handlers answer 404 without touching the store.
func ValidID(prefix, s string) bool {
	if !strings.HasPrefix(s, prefix) || len(s) != len(prefix)+idLen {
		return false
	}
	for _, c := range s[len(prefix):] {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	return true
}
