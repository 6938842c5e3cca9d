//go:build !unix

package dropboxsign

import (
	"context"
	"errors"
	"os"
)

// errNotUnix says why a FileStore cannot work here: it relies on flock and
// on Unix file owners.
var errNotUnix = errors.New("dropboxsign: FileStore needs a Unix system (flock, file owners): use another Store here")

const openNonBlock = 0

func flock(context.Context, *os.File) error { return errNotUnix }

func checkOwner(string, os.FileInfo) error { return errNotUnix }
