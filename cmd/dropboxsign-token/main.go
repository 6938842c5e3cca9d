// Command dropboxsign-token gets Dropbox Sign OAuth tokens in a terminal and
// shows package dropboxsign at work:
//
//	dropboxsign-token demo             # the whole flow against a local fake, no account needed
//	dropboxsign-token login            # authorize an account in the browser, store its token
//	dropboxsign-token print            # print a valid access token (refreshing it if needed)
//	dropboxsign-token status           # list stored accounts and their expiry
//
// For example: curl -H "Authorization: Bearer $(dropboxsign-token print)" https://api.hellosign.com/v3/account
//
// Exit codes: 0 success, 1 failure, 2 usage error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// usageError marks errors in how the command was called: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"demo", "run the whole OAuth flow against a local fake Dropbox Sign", runDemo},
	{"login", "authorize an account in the browser and store its token", runLogin},
	{"print", "print a valid access token for an account", runPrint},
	{"status", "list stored accounts, their expiry and last refresh", runStatus},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		printUsage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		var ue usageError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &ue):
			fmt.Fprintf(stderr, "dropboxsign-token %s: %v\nRun 'dropboxsign-token %s -h' for usage.\n", c.name, err, c.name)
			return 2
		default:
			fmt.Fprintf(stderr, "dropboxsign-token %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "dropboxsign-token: unknown command %q\n", args[0])
	printUsage(stderr)
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: dropboxsign-token <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'dropboxsign-token <command> -h' for a command's flags.")
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: dropboxsign-token %s [flags]\n\n%s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning a flag error into a usage error and refusing
// stray arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
