package ingest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/floodgate/floodgate"
	"github.com/floodgate/floodgate/internal/clocktest"
)

// TestAddressPrefix: IPv4 addresses are counted alone, IPv6 by their /64
// (one subscriber), IPv4-mapped IPv6 as the IPv4 address.
func TestAddressPrefix(t *testing.T) {
	tests := []struct {
		addr, want string
	}{
		{"198.51.100.7", "198.51.100.7/32"},
		{"::ffff:198.51.100.7", "198.51.100.7/32"},
		{"2001:db8:1:2::7", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	}
	for _, tt := range tests {
		p, ok := AddressPrefix(tt.addr)
		if !ok || p != netip.MustParsePrefix(tt.want) {
			t.Errorf("AddressPrefix(%q) = %v %v, want %s", tt.addr, p, ok, tt.want)
		}
	}
	if _, ok := AddressPrefix("not-an-ip"); ok {
		t.Error("a name is not an IP address")
	}
	g := NewGuard(GuardOptions{Tracked: 100})
	same := [][2]string{{"2001:db8:1:2::7", "2001:db8:1:2:a:b:c:d"}, {"::ffff:192.0.2.1", "192.0.2.1"}}
	for _, p := range same {
		a, _ := g.addressHash(p[0])
		b, _ := g.addressHash(p[1])
		if a != b {
			t.Errorf("%s and %s are counted apart", p[0], p[1])
		}
	}
	differ := [][2]string{{"2001:db8:1:2::7", "2001:db8:1:3::7"}, {"192.0.2.1", "192.0.2.2"}, {"::ffff:0:0", "::"}}
	for _, p := range differ {
		a, _ := g.addressHash(p[0])
		b, _ := g.addressHash(p[1])
		if a == b {
			t.Errorf("%s and %s are counted as one", p[0], p[1])
		}
	}
	if _, ok := g.addressHash(""); ok {
		t.Error("no address is counted")
	}
}

func failed(addr, code string) *floodgate.PaymentOrder {
	return &floodgate.PaymentOrder{ClientAddr: addr, Status: floodgate.StatusFailed, FailureCode: code}
}

func succeeded(addr string) *floodgate.PaymentOrder {
	return &floodgate.PaymentOrder{ClientAddr: addr, Status: floodgate.StatusSucceeded}
}

// TestGuardSuspect: an address is suspect while its card declines in ten
// minutes reach the limit and outnumber its successes; processing errors
// and cancels say nothing of it.
func TestGuardSuspect(t *testing.T) {
	tests := []struct {
		name                string
		declines, successes int
		other               []*floodgate.PaymentOrder
		want                bool
	}{
		{"quiet", 0, 0, nil, false},
		{"below the limit", 9, 0, nil, false},
		{"at the limit", 10, 0, nil, true},
		{"an audience with a normal decline rate", 150, 1850, nil, false},
		{"as many successes as declines", 12, 12, nil, false},
		{"declines outnumber successes", 13, 12, nil, true},
		{"processing errors are not declines", 5, 0, []*floodgate.PaymentOrder{
			failed("a", "processing_error"), failed("a", "processing_error"), failed("a", "processing_error"),
			failed("a", "processing_error"), failed("a", "processing_error")}, false},
		{"every card failure counts", 4, 0, []*floodgate.PaymentOrder{
			failed("a", "insufficient_funds"), failed("a", "expired_card"), failed("a", "incorrect_cvc"),
			failed("a", "incorrect_number"), failed("a", "authentication_failed"), failed("a", "card_declined")}, true},
		{"cancels are nothing", 9, 0, []*floodgate.PaymentOrder{{ClientAddr: "a", Status: floodgate.StatusCanceled}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := clocktest.New(t0)
			g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, Tracked: 1000, Clock: clock})
			for range tt.declines {
				g.Learn(failed("a", "card_declined"))
			}
			for range tt.successes {
				g.Learn(succeeded("a"))
			}
			for _, d := range tt.other {
				g.Learn(d)
			}
			if got := g.Suspect("a"); got != tt.want {
				t.Fatalf("suspect = %v, want %v", got, tt.want)
			}
			if g.Suspect("b") {
				t.Fatal("another address is suspect")
			}
		})
	}
	// Declines fade out of the ten-minute window.
	clock := clocktest.New(t0)
	g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, Tracked: 1000, Clock: clock})
	for range 10 {
		g.Learn(failed("198.51.100.7", "card_declined"))
	}
	if !g.Suspect("198.51.100.7") {
		t.Fatal("not suspect after 10 declines")
	}
	clock.Advance(20 * time.Minute)
	if g.Suspect("198.51.100.7") {
		t.Fatal("still suspect twenty minutes later")
	}
}

// TestGuardLimitsOnlySuspectAddresses: an audience behind one address is
// never limited by it; once the address is suspect, its attempts (new
// gifts and the screening of queued ones alike) share one allowance a
// minute; other addresses are untouched; an IPv6 /64 is one address.
func TestGuardLimitsOnlySuspectAddresses(t *testing.T) {
	clock := clocktest.New(t0)
	g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, PerEmail: 10, Tracked: 100_000, Clock: clock})
	const venue = "2001:db8:7:7::1"
	for i := range 2000 {
		if _, err := g.Allow(venue, fmt.Sprintf("d%d@example.org", i)); err != nil {
			t.Fatalf("donor %d behind the venue's address: %v", i, err)
		}
	}
	// A card tester on another address of the venue's /64.
	for range 10 {
		g.Learn(failed("2001:db8:7:7::99", "card_declined"))
	}
	allowed := 0
	for i := range 15 {
		if _, err := g.Allow("2001:db8:7:7::2", fmt.Sprintf("t%d@example.org", i)); err == nil {
			allowed++
		}
	}
	for range 10 {
		if g.Screen(venue) {
			allowed++
		}
	}
	if allowed != 20 {
		t.Fatalf("the suspect /64 was allowed %d attempts and charges, want 20", allowed)
	}
	reason, err := g.Allow(venue, "new@example.org")
	var fe *floodgate.Error
	if reason != LimitAddress || floodgate.ErrorCode(err) != floodgate.ERATELIMITED {
		t.Fatalf("past the allowance: %q %v", reason, err)
	}
	// Twenty in this minute: the next fits once they have faded to 19,
	// 3 s into the next minute.
	if fe = err.(*floodgate.Error); fe.RetryAfter != 63*time.Second {
		t.Fatalf("RetryAfter = %v, want 63s", fe.RetryAfter)
	}
	if g.Screen(venue) {
		t.Fatal("a queued gift was screened through past the allowance")
	}
	if _, err := g.Allow("2001:db8:7:8::1", "x@example.org"); err != nil || !g.Screen("192.0.2.1") {
		t.Fatalf("another address: %v", err)
	}
	clock.Advance(63 * time.Second)
	if _, err := g.Allow(venue, "later@example.org"); err != nil {
		t.Fatalf("after the announced wait: %v", err)
	}
}

// TestGuardEmailLimit: every attempt counts against its email, an hour,
// from any address; zero turns a limit off.
func TestGuardEmailLimit(t *testing.T) {
	clock := clocktest.New(t0)
	g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, PerEmail: 2, Tracked: 1000, Clock: clock})
	for i := range 2 {
		if _, err := g.Allow(fmt.Sprintf("192.0.2.%d", i), "card@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if reason, err := g.Allow("192.0.2.99", "card@example.org"); reason != LimitEmail || err == nil {
		t.Fatalf("third attempt for the email: %q %v", reason, err)
	}
	clock.Advance(2 * time.Hour)
	if _, err := g.Allow("192.0.2.99", "card@example.org"); err != nil {
		t.Fatalf("two hours later: %v", err)
	}
	off := NewGuard(GuardOptions{DeclineLimit: 1, Tracked: 10, Clock: clock})
	for range 20 {
		off.Learn(failed("a", "card_declined"))
	}
	for range 100 {
		if _, err := off.Allow("a", "b"); err != nil || !off.Screen("a") {
			t.Fatalf("limits off: %v", err)
		}
	}
}

// TestGuardFullTableStillRefuses: with every table past its capacity, a
// tester is still refused: keys past the capacity are counted in a sketch
// that can only over-count.
func TestGuardFullTableStillRefuses(t *testing.T) {
	clock := clocktest.New(t0)
	g := NewGuard(GuardOptions{SuspectAttempts: 5, DeclineLimit: 3, PerEmail: 3, Tracked: 100, Clock: clock})
	for i := range 20_000 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()
		if _, err := g.Allow(addr, fmt.Sprintf("d%d@example.org", i)); err != nil {
			t.Fatalf("donor %d: %v", i, err)
		}
		g.Learn(succeeded(addr))
	}
	for range 3 {
		g.Learn(failed("198.51.100.66", "card_declined"))
	}
	allowed := 0
	for i := range 50 {
		if _, err := g.Allow("198.51.100.66", fmt.Sprintf("t%d@example.org", i)); err == nil {
			allowed++
		}
	}
	if allowed > 5 {
		t.Fatalf("a full table let the tester make %d attempts, limit 5", allowed)
	}
	for range 3 {
		g.Allow("203.0.113.1", "reused@example.org")
	}
	if reason, err := g.Allow("203.0.113.2", "reused@example.org"); reason != LimitEmail || err == nil {
		t.Fatalf("a full email table: %q %v", reason, err)
	}
}

// donorAddr is donor i's own address.
func donorAddr(i int) string {
	return netip.AddrFrom4([4]byte{byte(11 + i>>24), byte(i >> 16), byte(i >> 8), byte(i)}).String()
}

// testerRun is what a card tester sees from a guard: each of 40 attempts'
// reason and wait, then each of 10 screenings.
func testerRun(g *Guard) []string {
	const tester = "198.51.100.66"
	for range 10 {
		g.Learn(failed(tester, "card_declined"))
	}
	var out []string
	for i := range 40 {
		reason, err := g.Allow(tester, fmt.Sprintf("tester%d@example.org", i))
		var wait time.Duration
		if fe, ok := err.(*floodgate.Error); ok {
			wait = fe.RetryAfter
		}
		out = append(out, fmt.Sprintf("%q %v", reason, wait))
	}
	for range 10 {
		out = append(out, fmt.Sprint(g.Screen(tester)))
	}
	return out
}

// TestGuardMillionDonors: after a million distinct donors (each its own
// address and email, each gift succeeded), a card tester is refused
// exactly as with ten donors tracked, at the default capacity.
func TestGuardMillionDonors(t *testing.T) {
	if testing.Short() {
		t.Skip("a million donors")
	}
	run := func(donors int) []string {
		clock := clocktest.New(t0)
		g := NewGuard(GuardOptions{SuspectAttempts: 20, DeclineLimit: 10, PerEmail: 10, Tracked: 1_000_000, Clock: clock})
		for i := range donors {
			addr := donorAddr(i)
			if _, err := g.Allow(addr, fmt.Sprintf("donor%d@example.org", i)); err != nil {
				t.Fatalf("donor %d: %v", i, err)
			}
			g.Learn(succeeded(addr))
		}
		for _, c := range []*counter{g.emails, g.successes} {
			for i := range c.shards {
				if c.shards[i].curSketch != nil {
					t.Fatalf("after %d donors a shard overflowed its %d keys", donors, c.perShard)
				}
			}
		}
		return testerRun(g)
	}
	few, many := run(10), run(1_000_000)
	if fmt.Sprint(few) != fmt.Sprint(many) {
		t.Fatalf("the tester's run differs:\n10 donors:  %v\n1M donors: %v", few, many)
	}
	refused := 0
	for _, s := range few {
		if s == "false" || strings.HasPrefix(s, `"address"`) {
			refused++
		}
	}
	if refused != 30 { // 40 attempts and 10 screenings, 20 allowed
		t.Fatalf("the tester was refused %d times, want 30: %v", refused, few)
	}
}
