package dropboxsign

import (
	"time"

	"golang.org/x/oauth2"
)

// WithSpendMark marks a token as being spent since a time, as a replica
// does in the store before presenting its refresh token.
var WithSpendMark = withSpendMark

// SuccessorGrace is how long such a mark keeps the other replicas waiting.
const SuccessorGrace = successorGrace

// AsAnotherProcess gives a source, or an Accounts, a table of grants of its
// own, as if it ran in another process: for tests of replicas in one test
// process, which would otherwise share the grants each spends.
func AsAnotherProcess() Option {
	return func(o *options) { o.grants = newGrantTable() }
}

// Grants is a table of grants of its own, for tests of the memory.
type Grants struct{ g *grantTable }

// NewGrants returns an empty table.
func NewGrants() Grants { return Grants{newGrantTable()} }

// Remember records, at now, that refreshToken brought tok, as a refresh does.
func (g Grants) Remember(refreshToken string, tok *oauth2.Token, now time.Time) {
	g.g.remember(newGrantKey("refresh", "test", "test", refreshToken), tok, now)
}

// Len is how many grants the table remembers.
func (g Grants) Len() int { return g.g.len() }

// MaxMarkSkew is how far replicas' clocks may disagree for a mark.
const MaxMarkSkew = maxMarkSkew
