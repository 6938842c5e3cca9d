package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dropboxsign-go/dropboxsign"
)

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", "Lists every stored account: when its token expires, when it was last saved,\n"+
		"whether it has a refresh token, which accounts await a new login because\n"+
		"Dropbox Sign refused their grant, and which were disconnected by the app\n"+
		"(disconnect), since when, and which tokens the keys at hand cannot open\n"+
		"(sealed under a key "+envSealKeys+" does not hold). It reads the store only:\n"+
		"it makes no request and creates nothing. Secrets are shown only with\n"+
		"-show-secrets. Exit code 1 if an account's token cannot be read or opened,\n"+
		"or if the token directory does not exist.", stderr)
	s := newSettings(fs)
	s.storeFlags()
	asJSON := fs.Bool("json", false, "print JSON for scripts (its shape is in docs/cli.md)")
	showSecrets := fs.Bool("show-secrets", false, "also print access and refresh tokens")
	if err := s.parse(args); err != nil {
		return err
	}
	list, err := listAccounts(s, *showSecrets)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(list); err != nil {
			return err
		}
	} else if err := list.writeText(stdout, *showSecrets, time.Now()); err != nil {
		return err
	}
	if missing := list.missingKeys(); missing != "" {
		return fmt.Errorf("%s: configure the key in %s (as a second key) to read them", missing, envSealKeys)
	}
	for _, a := range list.Accounts {
		if a.Error != "" {
			return fmt.Errorf("account %s: %s", shellWord(a.Key), a.Error)
		}
	}
	return nil
}

// missingKeys says how many tokens are sealed under keys not configured
// here, and which: "" if none.
func (l *statusList) missingKeys() string {
	count := map[string]int{}
	var ids []string
	n := 0
	for _, a := range l.Accounts {
		if a.MissingKey == "" {
			continue
		}
		if count[a.MissingKey] == 0 {
			ids = append(ids, a.MissingKey)
		}
		count[a.MissingKey]++
		n++
	}
	if n == 0 {
		return ""
	}
	slices.Sort(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%d under key %s", count[id], id))
	}
	return fmt.Sprintf("%d %s cannot be opened with the keys at hand (%s): sealed with %s not configured here (%s)",
		n, plural(n, "token", "tokens"), envSealKeys, plural(len(ids), "a key", "keys"), strings.Join(parts, ", "))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// statusList is what status reports, and the JSON shape of status -json:
// documented in docs/cli.md, so fields are only ever added.
type statusList struct {
	Dir      string          `json:"dir"`      // the token directory; "" for a Redis or PostgreSQL store
	Store    string          `json:"store"`    // the directory, or the store's URL with its password hidden
	Accounts []statusAccount `json:"accounts"` // sorted by key; [] when none

	command func(name, key string) string // the command line of name for an account, with the flags status was given
}

// statusAccount is one account. Times are UTC, RFC 3339, whole seconds;
// null when unknown.
type statusAccount struct {
	Key               string    `json:"key"`
	Expires           *jsonTime `json:"expires"`                 // the access token's expiry; null: none given, refused or disconnected
	SavedAt           *jsonTime `json:"saved_at"`                // when the token was stored; null for a refusal or disconnection mark
	HasRefreshToken   bool      `json:"has_refresh_token"`       // false: it cannot be refreshed
	RefusedSince      *jsonTime `json:"refused_since"`           // non-null: Dropbox Sign refused the grant; the account must log in again
	DisconnectedSince *jsonTime `json:"disconnected_since"`      // non-null: the app disconnected the account; its tokens are erased
	Error             string    `json:"error,omitempty"`         // the account's token cannot be read or opened
	MissingKey        string    `json:"missing_key,omitempty"`   // the ID of the key that sealed the token, which is not configured here
	AccessToken       string    `json:"access_token,omitempty"`  // with -show-secrets only
	RefreshToken      string    `json:"refresh_token,omitempty"` // with -show-secrets only
}

// jsonTime marshals as RFC 3339 in UTC, in whole seconds.
type jsonTime struct{ time.Time }

func (t jsonTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(t.UTC().Format(time.RFC3339))
}

func newJSONTime(t time.Time) *jsonTime {
	if t.IsZero() {
		return nil
	}
	return &jsonTime{t.Truncate(time.Second)}
}

// listAccounts reads every account in the store. A token directory that
// does not exist is an error, as for keys and reseal (a mistyped -dir must
// not read as an empty store), and is not created.
func listAccounts(s *settings, secrets bool) (*statusList, error) {
	store, err := s.openStore(false)
	if errors.Is(err, errNoDir) {
		return nil, fmt.Errorf("no token store: %s does not exist", store.where)
	}
	if err != nil {
		return nil, err
	}
	defer store.close()
	list := &statusList{Store: store.where, Accounts: []statusAccount{}, command: func(name, key string) string {
		s.account = key
		return s.command(name)
	}}
	if store.file != nil {
		list.Dir = store.where
	}
	ctx := context.Background()
	var keys []string
	for key, err := range store.Keys(ctx) {
		if err != nil {
			return nil, err
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		a := statusAccount{Key: key}
		tok, err := store.Load(ctx, key)
		var refused *dropboxsign.RefusedError
		var disconnected *dropboxsign.DisconnectedError
		var missing *dropboxsign.MissingKeyError
		switch {
		case errors.Is(err, dropboxsign.ErrNotFound):
			continue // removed since it was listed
		case errors.As(err, &missing):
			a.MissingKey, a.Error = missing.KeyID, err.Error()
		case errors.As(err, &disconnected):
			a.DisconnectedSince = newJSONTime(disconnected.Since)
			if a.DisconnectedSince == nil { // a mark without a time still is one
				a.DisconnectedSince = &jsonTime{}
			}
		case errors.As(err, &refused):
			a.RefusedSince = newJSONTime(refused.Since)
			if a.RefusedSince == nil { // a mark without a time still is one
				a.RefusedSince = &jsonTime{}
			}
		case err != nil:
			a.Error = err.Error()
		default:
			a.Expires = newJSONTime(tok.Expiry)
			a.HasRefreshToken = tok.RefreshToken != ""
			a.SavedAt = newJSONTime(store.savedAt(key))
			if secrets {
				a.AccessToken, a.RefreshToken = tok.AccessToken, tok.RefreshToken
			}
		}
		list.Accounts = append(list.Accounts, a)
	}
	return list, nil
}

// writeText writes the list as a table, then a line for each account that
// needs something done.
func (l *statusList) writeText(out io.Writer, secrets bool, now time.Time) error {
	if len(l.Accounts) == 0 {
		_, err := fmt.Fprintf(out, "no accounts stored in %s: run 'dropboxsign-token login' to add one\n", l.Store)
		return err
	}
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	header := "ACCOUNT\tSTATE\tEXPIRES\tLAST SAVED\tREFRESH TOKEN"
	if secrets {
		header += "\tACCESS TOKEN\tREFRESH TOKEN VALUE"
	}
	fmt.Fprintln(w, header)
	var todo []string
	for _, a := range l.Accounts {
		key := shellWord(a.Key)
		state, expires, saved, refresh := "ok", "never", "-", "no"
		switch {
		case a.MissingKey != "":
			state, expires, refresh = "no key", "-", "-"
			todo = append(todo, fmt.Sprintf("%s: sealed with encryption key %s, which %s does not hold: configure that key to read it", key, a.MissingKey, envSealKeys))
		case a.Error != "":
			state, expires, refresh = "unreadable", "-", "-"
			todo = append(todo, fmt.Sprintf("%s: unreadable: %s", key, a.Error))
		case a.RefusedSince != nil:
			state, expires, refresh = "refused", "-", "-"
			since := ""
			if !a.RefusedSince.IsZero() {
				since = " since " + a.RefusedSince.Local().Format(time.DateTime) + " (" + ago(now.Sub(a.RefusedSince.Time)) + ")"
			}
			todo = append(todo, fmt.Sprintf("%s: awaits re-authorization%s: Dropbox Sign refused its grant; run '%s'", key, since, l.command("login", a.Key)))
		case a.DisconnectedSince != nil:
			state, expires, refresh = "disconnected", "-", "-"
			todo = append(todo, disconnectedLine(key, a.DisconnectedSince.Time, now, l.command("login", a.Key), l.command("forget", a.Key)))
		default:
			if a.Expires != nil {
				expires = a.Expires.Local().Format(time.DateTime) + " (" + relative(a.Expires.Sub(now)) + ")"
				if !a.Expires.After(now) {
					state = "expired"
				}
			}
			if a.SavedAt != nil {
				saved = a.SavedAt.Local().Format(time.DateTime)
			}
			if a.HasRefreshToken {
				refresh = "yes"
			} else if state == "expired" {
				todo = append(todo, fmt.Sprintf("%s: expired and has no refresh token; run '%s'", key, l.command("login", a.Key)))
			}
		}
		line := strings.Join([]string{key, state, expires, saved, refresh}, "\t")
		if secrets {
			line += "\t" + a.AccessToken + "\t" + a.RefreshToken
		}
		fmt.Fprintln(w, line)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(todo) > 0 {
		fmt.Fprintln(out)
	}
	for _, line := range todo {
		if _, err := fmt.Fprintln(out, line); err != nil {
			return err
		}
	}
	if missing := l.missingKeys(); missing != "" {
		if _, err := fmt.Fprintf(out, "\n%s.\n", missing); err != nil {
			return err
		}
	}
	return nil
}

// disconnectedLine is status's line for an account the app disconnected at
// since (zero if the mark does not say): nothing awaits a login, and the
// mark may be erased with forget once it is dropboxsign.ForgetAfter old.
func disconnectedLine(key string, since, now time.Time, login, forget string) string {
	if since.IsZero() {
		return fmt.Sprintf("%s: disconnected by the app (its mark has no time): its tokens are erased; '%s' connects it again", key, login)
	}
	line := fmt.Sprintf("%s: disconnected by the app on %s (%s): its tokens are erased; '%s' connects it again; ",
		key, since.Local().Format(time.DateTime), ago(now.Sub(since)), login)
	if erasable := since.Add(dropboxsign.ForgetAfter); now.Before(erasable) {
		return line + fmt.Sprintf("'%s' erases its mark from %s", forget, erasable.Local().Format(time.DateTime))
	}
	return line + fmt.Sprintf("its mark may be erased now: run '%s'", forget)
}

// relative says when something in d happens: "in 59m59s", "1m0s ago".
func relative(d time.Duration) string {
	if d < 0 {
		return ago(-d)
	}
	return "in " + d.Round(time.Second).String()
}

// ago says how long ago something happened: "just now", "3m2s ago".
func ago(d time.Duration) string {
	if d < time.Second {
		return "just now" // also a time rounded past now
	}
	return d.Round(time.Second).String() + " ago"
}
