package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/dropboxsign-go/dropboxsign"
)

func runKeys(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keys", "Counts the store's tokens by the encryption key that seals them (a census):\n"+
		"tokens per key ID, in plain JSON, stored as the keys at hand write them,\n"+
		"and those the keys at hand cannot open. It marks the keys of "+envSealKeys+":\n"+
		"the first seals, the others only open. A key with no token left may be\n"+
		"removed once every replica seals with the first. It prints key IDs, never\n"+
		"keys, and no token; it makes no request. Exit code 1 if a token cannot be\n"+
		"opened with the keys at hand.", stderr)
	s := newSettings(fs)
	s.storeFlags()
	asJSON := fs.Bool("json", false, "print JSON for scripts (its shape is in docs/cli.md)")
	if err := s.parse(args); err != nil {
		return err
	}
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		return fmt.Errorf("no token store: %s does not exist", store.where)
	}
	if err != nil {
		return err
	}
	defer store.close()
	si, err := store.inspector()
	if err != nil {
		return err
	}
	sealer, _ := s.sealer() // openStore checked it
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	census, err := dropboxsign.Census(ctx, si)
	if err != nil {
		return fmt.Errorf("census of %s: %w", store.where, err)
	}
	r := newKeysReport(store.where, census, sealer)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
	} else if err := r.writeText(stdout); err != nil {
		return err
	}
	if n := r.unopenable(); n > 0 {
		return fmt.Errorf("%d %s cannot be opened with the keys at hand (%s): %s",
			n, plural(n, "token", "tokens"), envSealKeys, r.unopenableText())
	}
	return nil
}

// keysReport is what keys reports, and the JSON shape of keys -json:
// documented in docs/cli.md, so fields are only ever added.
type keysReport struct {
	Store   string `json:"store"`   // the directory, or the store's URL with its password hidden
	Tokens  int    `json:"tokens"`  // records that hold a token (or cannot be read as a token or a mark)
	Plain   int    `json:"plain"`   // tokens in plain JSON
	Current int    `json:"current"` // tokens stored as the keys at hand write them
	// Reseal counts the tokens a reseal would write again: the others,
	// less those it cannot open.
	Reseal int         `json:"reseal"`
	Keys   []keyCensus `json:"keys"` // the configured keys in their order, then the others by count
	// Unopenable counts, by key ID ("" for plain tokens refused, or records
	// that are not tokens), the tokens the keys at hand cannot open.
	Unopenable map[string]int `json:"unopenable"`
}

// keyCensus is one key ID's line.
type keyCensus struct {
	ID         string `json:"id"`
	Tokens     int    `json:"tokens"`
	Configured int    `json:"configured"` // its position in DROPBOX_SIGN_SEAL_KEYS (1 seals); 0: not configured
	Seals      bool   `json:"seals"`      // the first configured key: new tokens are sealed with it
	Retired    bool   `json:"retired"`    // listed in DROPBOX_SIGN_RETIRED_KEY_IDS
}

func newKeysReport(where string, c dropboxsign.CensusReport, sealer *dropboxsign.Sealer) *keysReport {
	r := &keysReport{Store: where, Tokens: c.Tokens, Plain: c.Plain, Current: c.Current, Unopenable: c.Unopenable, Keys: []keyCensus{}}
	if r.Unopenable == nil {
		r.Unopenable = map[string]int{}
	}
	r.Reseal = max(0, c.Tokens-c.Current-r.unopenable()) // never negative, whatever the store counted
	retired := retiredIDs()
	seen := map[string]bool{}
	for i, id := range sealer.KeyIDs() {
		if seen[id] { // the same key twice in the list
			continue
		}
		seen[id] = true
		r.Keys = append(r.Keys, keyCensus{ID: id, Tokens: c.ByKey[id], Configured: i + 1, Seals: i == 0, Retired: retired[id]})
	}
	for _, id := range c.KeyCounts() {
		if !seen[id] {
			seen[id] = true
			r.Keys = append(r.Keys, keyCensus{ID: id, Tokens: c.ByKey[id], Retired: retired[id]})
		}
	}
	// A retired key with no token left is shown too: the census says it
	// was safe to remove.
	var gone []string
	for id := range retired {
		if id != "" && !seen[id] {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		r.Keys = append(r.Keys, keyCensus{ID: id, Retired: true})
	}
	return r
}

// retiredIDs is the set of DROPBOX_SIGN_RETIRED_KEY_IDS (checked by
// settings.sealer), lowercased.
func retiredIDs() map[string]bool {
	retired := map[string]bool{}
	for id := range strings.SplitSeq(os.Getenv(envRetiredIDs), ",") {
		if id = strings.ToLower(strings.TrimSpace(id)); id != "" {
			retired[id] = true
		}
	}
	return retired
}

func (r *keysReport) unopenable() int {
	n := 0
	for _, c := range r.Unopenable {
		n += c
	}
	return n
}

// unopenableText says which the unopenable tokens are: "2 under key X".
func (r *keysReport) unopenableText() string {
	ids := slices.Sorted(func(yield func(string) bool) {
		for id := range r.Unopenable {
			if !yield(id) {
				return
			}
		}
	})
	var parts []string
	for _, id := range ids {
		switch {
		case id == "":
			parts = append(parts, fmt.Sprintf("%d in plain JSON refused, or not tokens", r.Unopenable[id]))
		case r.configured(id):
			// The key is at hand, and the token still does not open: its
			// sealed bytes were altered, or bound to another account.
			parts = append(parts, fmt.Sprintf("%d %s not open with key %s, which is configured: tampered with, or copied from another account",
				r.Unopenable[id], plural(r.Unopenable[id], "does", "do"), id))
		default:
			parts = append(parts, fmt.Sprintf("%d under key %s, not configured here", r.Unopenable[id], id))
		}
	}
	return strings.Join(parts, ", ")
}

// configured reports whether the key id is one of DROPBOX_SIGN_SEAL_KEYS.
func (r *keysReport) configured(id string) bool {
	for _, k := range r.Keys {
		if k.ID == id {
			return k.Configured > 0
		}
	}
	return false
}

func (r *keysReport) writeText(out io.Writer) error {
	fmt.Fprintf(out, "Store: %s\n", r.Store)
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "KEY ID\tTOKENS\tKEY")
	for _, k := range r.Keys {
		what := "not configured here: its tokens cannot be opened"
		switch {
		case k.Seals:
			what = "configured (" + envSealKeys + " 1st): seals"
		case k.Configured > 0:
			what = fmt.Sprintf("configured (%s %s): opens only", envSealKeys, ordinal(k.Configured))
		case k.Retired:
			what = "retired: its tokens cannot be opened"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\n", k.ID, k.Tokens, what)
	}
	fmt.Fprintf(w, "plain\t%d\t%s\n", r.Plain, "no key: plain JSON")
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\n%d %s: %d as the keys at hand write them, %d to re-seal ('dropboxsign-token reseal'), %d that cannot be opened.\n",
		r.Tokens, plural(r.Tokens, "token", "tokens"), r.Current, r.Reseal, r.unopenable())
	for _, k := range r.Keys {
		if k.Configured > 1 && k.Tokens == 0 && r.unopenable() == 0 {
			fmt.Fprintf(out, "Key %s seals no token: once every replica seals with the first key, it may be removed from %s (and listed in %s).\n",
				k.ID, envSealKeys, envRetiredIDs)
		}
	}
	return nil
}

func ordinal(n int) string {
	switch {
	case n%100 >= 11 && n%100 <= 13:
		return fmt.Sprintf("%dth", n)
	case n%10 == 1:
		return fmt.Sprintf("%dst", n)
	case n%10 == 2:
		return fmt.Sprintf("%dnd", n)
	case n%10 == 3:
		return fmt.Sprintf("%drd", n)
	}
	return fmt.Sprintf("%dth", n)
}

func runReseal(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("reseal", "Writes every token of the store that is not sealed with the first key of\n"+
		envSealKeys+" again, sealed with it, while the fleet runs: each under its\n"+
		"refresh lock, with a compare-and-swap save, so that a token refreshed\n"+
		"meanwhile is left to its refresh. List the new key first and the old ones\n"+
		"after it. It makes no request. Progress goes to stderr, the summary to\n"+
		"stdout. Interrupted (Ctrl-C), it prints the account to resume after\n"+
		"(-after) and exits 1; so it does if a token cannot be opened.\n"+
		"Before its first write it counts the tokens by key (as keys does) and\n"+
		"writes nothing (exit 1) if a token is sealed under a key not configured\n"+
		"here: the keys at hand are not the fleet's (-force skips this). If none\n"+
		"is sealed under the first key yet, it says so, with the key's ID to check.", stderr)
	s := newSettings(fs)
	s.storeFlags()
	after := fs.String("after", "", "resume: visit only the accounts whose names sort after this `account`\n"+
		"(an interrupted reseal prints it); a value that starts with a double\n"+
		"quote is a Go-quoted string, as reseal prints a name that is not plain text")
	force := fs.Bool("force", false, "re-seal even if the census finds tokens under a key not configured here")
	rate := fs.Float64("rate", 50, "at most this many tokens written per second, so that the store serves\n"+
		"the fleet first")
	if err := s.parse(args); err != nil {
		return err
	}
	from, err := resumeAfter(*after)
	if err != nil {
		return err
	}
	if math.IsNaN(*rate) || math.IsInf(*rate, 0) || *rate <= 0 {
		return usagef("-rate %v: want a number of tokens per second above 0", *rate)
	}
	sealer, err := s.sealer()
	if err != nil {
		return err
	}
	if sealer == nil {
		return usagef("no keys: set %s to the new key first, then the keys that sealed the stored tokens (base64, separated by commas)", envSealKeys)
	}
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		return fmt.Errorf("no token store: %s does not exist", store.where)
	}
	if err != nil {
		return err
	}
	defer store.close()
	si, err := store.inspector()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	key := sealer.KeyIDs()[0]
	if !*force {
		census, err := dropboxsign.Census(ctx, si)
		if err != nil {
			return fmt.Errorf("census of %s, before re-sealing: %w", store.where, err)
		}
		warning, err := fleetEvidence(census, sealer.KeyIDs(), retiredIDs())
		if err != nil {
			return err
		}
		if warning != "" {
			fmt.Fprintln(stderr, warning)
		}
	}
	fromText := ""
	if from != "" {
		fromText = ", after account " + resumeWord(from)
	}
	fmt.Fprintf(stderr, "Re-sealing the tokens of %s with key %s%s, at most %v a second...\n", store.where, key, fromText, *rate)
	var shown dropboxsign.ResealProgress
	p, err := dropboxsign.Reseal(ctx, si, dropboxsign.ResealOptions{After: from, PerSecond: *rate, Progress: func(p dropboxsign.ResealProgress) {
		if p == shown { // the last page's report, then the end's
			return
		}
		shown = p
		fmt.Fprintf(stderr, "  %d visited: %d re-sealed, %d changed meanwhile, %d cannot be opened (last account: %s)\n",
			p.Visited, p.Resealed, p.Changed, p.Unopenable, resumeWord(p.Last))
	}})
	interrupted := ctx.Err() != nil
	stop()
	fmt.Fprintf(stdout, "Re-sealed %d %s with key %s; %d already were; %d changed meanwhile (left to whoever changed them, who sealed them with their keys); %d cannot be opened.\n",
		p.Resealed, plural(p.Resealed, "token", "tokens"), key, p.Visited-p.Resealed-p.Changed-p.Unopenable, p.Changed, p.Unopenable)
	if err != nil {
		resume := "run it again"
		if p.Last != "" {
			resume = "run it again with -after " + resumeWord(p.Last)
		}
		if interrupted && errors.Is(err, context.Canceled) {
			return fmt.Errorf("interrupted after %d %s: to resume, %s", p.Visited, plural(p.Visited, "token", "tokens"), resume)
		}
		return fmt.Errorf("stopped after %d %s: to resume, %s\n(%v)", p.Visited, plural(p.Visited, "token", "tokens"), resume, err)
	}
	if p.Unopenable > 0 {
		return fmt.Errorf("%d %s cannot be opened with the keys at hand (%s): 'dropboxsign-token keys' says under which keys",
			p.Unopenable, plural(p.Unopenable, "token", "tokens"), envSealKeys)
	}
	fmt.Fprintln(stdout, "'dropboxsign-token keys' shows how the tokens are sealed now.")
	return nil
}

// fleetEvidence is reseal's check before its first write, on a census
// made with the keys at hand (ids, the first seals). A token under a key
// not configured here, and not listed as retired, means the keys at hand
// are not the fleet's (a replica sealed it with a key this shell lacks,
// such as the fleet's real first key where this shell's was mistyped or
// made again): err, and nothing is written, since re-sealing would write
// tokens the fleet cannot open. No token under the first key while some
// are under others is what a fleet that just switched to it shows, and
// also what a mistyped key shows: a warning, with the key's ID to check.
func fleetEvidence(c dropboxsign.CensusReport, ids []string, retired map[string]bool) (warning string, err error) {
	configured := map[string]bool{}
	for _, id := range ids {
		configured[id] = true
	}
	var foreign []string
	n := 0
	for _, id := range c.KeyCounts() {
		if !configured[id] && !retired[id] && c.ByKey[id] > 0 {
			foreign = append(foreign, fmt.Sprintf("%d under key %s", c.ByKey[id], id))
			n += c.ByKey[id]
		}
	}
	if n > 0 {
		return "", fmt.Errorf("nothing re-sealed: %d %s sealed with a key not configured here (%s): the keys of %s are not the fleet's "+
			"(is the first, %s, the key the fleet was given, or was it mistyped or made again?); "+
			"give this command the fleet's keys, the one it seals with first (-force re-seals anyway)",
			n, plural(n, "token is", "tokens are"), strings.Join(foreign, ", "), envSealKeys, ids[0])
	}
	others := 0
	for _, id := range c.KeyCounts() {
		if id != ids[0] {
			others += c.ByKey[id]
		}
	}
	if c.ByKey[ids[0]] == 0 && others > 0 {
		return fmt.Sprintf("Note: no token is sealed with key %s yet, the first of %s: check that it is the ID of the key the replicas seal with "+
			"(a token a replica refreshed since shows under it in 'dropboxsign-token keys'); were it mistyped, the replicas could not open what this re-seals.",
			ids[0], envSealKeys), nil
	}
	return "", nil
}

// resumeWord is how reseal prints an account to resume after (-after):
// as a shell word that gives back its exact name. A name that shellWord
// would alter (control characters, over 200 bytes), or that starts with
// a double quote, is printed Go-quoted (strconv.Quote) inside the shell
// word, which -after reads back (resumeAfter).
func resumeWord(account string) string {
	if printable(account) == account && !strings.HasPrefix(account, `"`) {
		return shellWord(account)
	}
	q := strconv.Quote(account)
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "`", "\\`").Replace(q) + `"`
}

// resumeAfter reads -after: an account name, or a Go-quoted one when it
// starts with a double quote (as resumeWord prints it).
func resumeAfter(v string) (string, error) {
	if !strings.HasPrefix(v, `"`) {
		return v, nil
	}
	account, err := strconv.Unquote(v)
	if err != nil {
		return "", usagef("-after: a value that starts with a double quote is read as a Go-quoted string, and this one is not (%v): pass it as reseal printed it", err)
	}
	return account, nil
}
