package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

func runStatus(args []string, stdout, stderr io.Writer) error {
	var s settings
	fs := newFlagSet("status", "Lists the stored accounts: when each token expires and when it was last\n"+
		"saved. Secrets are shown only with -show-secrets.", stderr)
	s.register(fs, false)
	showSecrets := fs.Bool("show-secrets", false, "also print access and refresh tokens")
	if err := parse(fs, args); err != nil {
		return err
	}
	store, err := s.store()
	if err != nil {
		return err
	}
	var keys []string
	for key, err := range store.Keys(context.Background()) {
		if err != nil {
			return err
		}
		keys = append(keys, key)
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		fmt.Fprintln(stderr, "no accounts stored: run 'dropboxsign-token login'")
		return nil
	}
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	header := "ACCOUNT\tEXPIRES\tLAST SAVED\tREFRESH TOKEN"
	if *showSecrets {
		header += "\tACCESS TOKEN\tREFRESH TOKEN VALUE"
	}
	fmt.Fprintln(w, header)
	now := time.Now()
	var firstErr error
	for _, key := range keys {
		tok, err := store.Load(context.Background(), key)
		if err != nil {
			fmt.Fprintf(w, "%s\t(unreadable)\t\t\n", key)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		saved, _ := store.SavedAt(key)
		expires := "never"
		if !tok.Expiry.IsZero() {
			expires = tok.Expiry.Local().Format(time.DateTime) + " (" + relative(tok.Expiry.Sub(now)) + ")"
		}
		hasRefresh := "no"
		if tok.RefreshToken != "" {
			hasRefresh = "yes"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%s", key, expires, saved.Local().Format(time.DateTime), hasRefresh)
		if *showSecrets {
			line += "\t" + tok.AccessToken + "\t" + tok.RefreshToken
		}
		fmt.Fprintln(w, line)
	}
	w.Flush()
	return firstErr
}

func relative(d time.Duration) string {
	d = d.Round(time.Second)
	if d < 0 {
		return "expired " + (-d).String() + " ago"
	}
	return "in " + d.String()
}
