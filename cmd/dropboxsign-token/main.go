// Command dropboxsign-token gets Dropbox Sign OAuth tokens in a terminal and
// shows package dropboxsign at work:
//
//	dropboxsign-token login            # authorize an account in the browser, store its token
//	dropboxsign-token print            # print a valid access token (refreshing it if needed)
//	dropboxsign-token status           # list stored accounts, their expiry, refusals and disconnections
//	dropboxsign-token keys             # count the tokens by the encryption key that seals them
//	dropboxsign-token reseal           # seal every token with the first key, after a key rotation
//	dropboxsign-token disconnect       # disconnect an account: erase its tokens, for good
//	dropboxsign-token forget           # erase a disconnected account's mark, once it is old enough
//	dropboxsign-token fake             # serve a fake Dropbox Sign to try the three above
//	dropboxsign-token demo             # the whole flow against a local fake, no account needed
//
// Every command but fake and demo works on a token directory, Redis (also
// with TLS, and Redis Cluster) or PostgreSQL (-store), with tokens sealed by
// the keys of DROPBOX_SIGN_SEAL_KEYS.
//
// For example: curl -H "Authorization: Bearer $(dropboxsign-token print)" https://api.hellosign.com/v3/account
//
// Exit codes: 0 success, 1 failure, 2 usage error, 3 the account must be
// authorized (again) with login. docs/cli.md has the details.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Exit codes, documented in docs/cli.md: scripts branch on them.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2 // the command line is wrong: nothing was attempted
	exitLogin   = 3 // the account has no usable grant: run login
)

// usageError marks errors in how the command was called: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// loginError says that an account needs a login before anything else can
// work for it (none stored, or its grant refused): exit code 3.
type loginError struct{ msg string }

func (e loginError) Error() string { return e.msg }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

// commands in the order a newcomer meets them in the help.
var commands = []command{
	{"login", "authorize an account in the browser and store its token", runLogin},
	{"print", "print a valid access token for an account, and nothing else", runPrint},
	{"status", "list stored accounts: expiry, last save, refusals, disconnections", runStatus},
	{"keys", "count the tokens by the encryption key that seals them (a census)", runKeys},
	{"reseal", "seal every token with the first key, after a key rotation", runReseal},
	{"disconnect", "disconnect an account: erase its tokens, and keep them from coming back", runDisconnect},
	{"forget", "erase a disconnected account's mark, once it is old enough", runForget},
	{"fake", "serve a fake Dropbox Sign on loopback, to try the commands above", runFake},
	{"demo", "run the whole OAuth flow against a fake, with checks", runDemo},
}

func main() {
	// The store's password and the keys never reach the output, whatever
	// prints them (see addSecret).
	os.Exit(run(os.Args[1:], redactingWriter{os.Stdout}, redactingWriter{os.Stderr}))
}

// run runs a command line and returns its exit code. Help and errors go to
// stderr, once each: stdout carries only a command's output.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			return run([]string{args[1], "-h"}, stdout, stderr)
		}
		printUsage(stderr)
		return exitOK
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var (
			ue usageError
			le loginError
		)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "dropboxsign-token %s: %v\nRun 'dropboxsign-token %s -h' for usage.\n", c.name, err, c.name)
			return exitUsage
		case errors.As(err, &le):
			fmt.Fprintf(stderr, "dropboxsign-token %s: %v\n", c.name, err)
			return exitLogin
		default:
			fmt.Fprintf(stderr, "dropboxsign-token %s: %v\n", c.name, err)
			return exitFailure
		}
	}
	fmt.Fprintf(stderr, "dropboxsign-token: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return exitUsage
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: dropboxsign-token <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	width := 0
	for _, c := range commands {
		width = max(width, len(c.name))
	}
	for _, c := range commands {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'dropboxsign-token <command> -h' for a command's flags.")
	fmt.Fprintln(w, "No Dropbox Sign app yet? Run 'dropboxsign-token fake' and follow what it prints.")
	fmt.Fprintln(w, "Exit codes: 0 success, 1 failure, 2 usage error, 3 the account must be authorized (again) with login.")
}

// flagSet is a command's flags: it neither prints nor exits by itself, so
// that -h prints the help once, on stderr, and a bad flag becomes one usage
// error, which run prints.
type flagSet struct {
	*flag.FlagSet
	synopsis string
	stderr   io.Writer
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {} // the flag package calls it for errors too
	return &flagSet{FlagSet: fs, synopsis: synopsis, stderr: stderr}
}

// help prints the command's usage and flags, each flag once with its one
// default (values from the environment are not defaults: they are named
// in the flag's text, never shown).
func (fs *flagSet) help() {
	fmt.Fprintf(fs.stderr, "Usage: dropboxsign-token %s [flags]\n\n%s\n\nFlags:\n", fs.Name(), fs.synopsis)
	fs.SetOutput(fs.stderr)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// parse parses flags, turning a flag error into a usage error and refusing
// stray arguments. An unknown flag's error lists the flags the command has.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.help()
			return err
		}
		if strings.HasPrefix(err.Error(), "flag provided but not defined") {
			var names []string
			fs.VisitAll(func(f *flag.Flag) { names = append(names, "-"+f.Name) })
			return usagef("%v (%s takes %s)", err, fs.Name(), strings.Join(names, ", "))
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// given reports whether the flag was given on the command line.
func (fs *flagSet) given(name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}
